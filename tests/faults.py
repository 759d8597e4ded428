"""What the fault suite shares: a steady flow of real tasks, and the recovery figures.

``STALK_FAULTS=full`` (``make bench``) runs each fault as long as the issue states it;
the default short mode runs the same faults shorter, in CI.
"""

from __future__ import annotations

import os
import random
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from kube import wait_for

FULL = os.environ.get("STALK_FAULTS") == "full"
DOWN = {
    "apiserver": 30 if FULL else 12,
    "etcd": 10 if FULL else 6,
    "operator": 20 if FULL else 10,
}
CHURN_ROUNDS = 20 if FULL else 4
CHURN_SIZE = 200
SLEEP = "stalk_worker.tasks.canvas.sleep"


@dataclass
class Flow:
    """1.5 tasks a second of 1-3 s sleeps, sent from a thread; every send is kept, so
    the test can tell whether each one finished (none lost)."""

    app: Any
    queue: str
    rate: float = 1.5
    sent: list[Any] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> Flow:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(1 / self.rate):
            self.send(random.uniform(1, 3))

    def send(self, seconds: float) -> None:
        # Publishing retries while the broker is away: a task counts as sent once the
        # broker took it, as a producer's confirmed publish does.
        result = self.app.send_task(
            SLEEP,
            args=(seconds, "flow"),
            queue=self.queue,
            retry=True,
            retry_policy={"max_retries": 60, "interval_start": 0.2, "interval_step": 0.5},
        )
        self.sent.append(result)

    def burst(self, count: int, seconds: float = 2.0) -> None:
        for _ in range(count):
            self.send(seconds)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def lost(self, timeout: float = 180) -> int:
        """Tasks sent that never succeeded (waits for the rest to finish)."""
        return len(self.unfinished(timeout))

    def unfinished(self, timeout: float = 180) -> dict[str, str]:
        """Tasks sent that have not succeeded within ``timeout``: id -> the last state
        read. Polled rather than ``get()``: an error from the result backend while
        waiting (it may be the Redis that just restarted) is read again, not taken for
        the task's end."""
        deadline = time.monotonic() + timeout
        waiting = list(self.sent)
        while True:
            states = {result.id: _state(result) for result in waiting}
            waiting = [result for result in waiting if states[result.id] != "SUCCESS"]
            if not waiting or time.monotonic() > deadline:
                return {result.id: states[result.id] for result in waiting}
            time.sleep(0.5)


def _state(result: Any) -> str:
    try:
        return str(result.state)
    except Exception as exc:
        return f"unreadable ({type(exc).__name__})"


def first_status_write_after(
    cluster, namespace: str, name: str, since: float, version: str | None
) -> float:
    """Seconds from ``since`` (monotonic, the fault's end) until the TaskQueue changes
    from ``version`` (read just before the fault, during which nothing can write it)."""
    wait_for(
        lambda: resource_version(cluster, namespace, name) not in (version, None),
        120,
        f"a status write of {name}",
        interval=0.2,
    )
    return time.monotonic() - since


def controllers_caught_up(cluster, timeout: float = 120) -> None:
    """Wait until the controller-manager acts on new objects again. After an API server
    outage its watches come back with client-go's backoff (up to 30 s between tries, as
    in any cluster); the next test's namespace must not wait for that."""
    probe = f"caught-up-{random.randrange(1 << 30):x}"
    cluster.kubectl("create", "namespace", probe)
    try:
        wait_for(
            lambda: (
                cluster.kubectl(
                    "get", "serviceaccount", "default", namespace=probe, check=False
                ).returncode
                == 0
            ),
            timeout,
            "the controller-manager to create a new namespace's ServiceAccount",
        )
    finally:
        cluster.kubectl("delete", "namespace", probe, "--wait=false", check=False)


def resource_version(cluster, namespace: str, name: str) -> str | None:
    found = cluster.kubectl(
        "get", "tq", name, "-o", "jsonpath={.metadata.resourceVersion}",
        namespace=namespace, check=False,
    )  # fmt: skip
    return found.stdout.strip() or None if found.returncode == 0 else None
