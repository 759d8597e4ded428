"""What a run observes, the same way for every pool: Celery's task events, and a sample
of each pool's backlog, replicas and pods every :data:`SAMPLE_SECONDS`.

Task events come from the workers (Stalk's worker app sends them by default), so the
time a task started and the worker that ran it are the worker's own; a task that was
killed with its worker and delivered again shows as two ``task-started`` events. Events
travel by Redis pub/sub and one can be missed (a reconnect); a task whose events are
missing is completed from its result (``sleep`` returns when it started and finished,
and where), so no task is left waiting forever for an event that will not come.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from lightkube import Client
from lightkube.resources.apps_v1 import Deployment
from lightkube.resources.autoscaling_v2 import HorizontalPodAutoscaler
from lightkube.resources.core_v1 import Pod
from stalk_broker.keys import KeyLayout

SAMPLE_SECONDS = 0.5


@dataclass
class TaskRecord:
    pool: str
    sent: float
    seconds: float
    priority: int | None
    starts: list[tuple[float, str]] = field(default_factory=list)
    """(time, worker hostname) of every ``task-started``."""
    finished: float | None = None


@dataclass(frozen=True)
class Sample:
    at: float
    pool: str
    backlog: int
    """Waiting tasks, over every priority list of the pool's queue."""
    replicas: int
    """The Deployment's ``spec.replicas``: what the autoscaler asked for."""
    pods: int
    """Pods that exist and have not finished: what the cluster pays for."""
    hpa_metric: float | None = None
    """For a KEDA pool, the external metric's value as the HPA last read it."""


def pool_of(hostname: str, pools: Sequence[str]) -> str | None:
    """A worker's pool from its hostname (``<pod>@<namespace>``, the pod named after
    its Deployment)."""
    pod = hostname.split("@", 1)[0]
    matches = [p for p in pools if pod.startswith(f"{p}-")]
    return max(matches, key=len) if matches else None


class Recorder:
    """Collects task events and samples in two threads until :meth:`stop`."""

    def __init__(
        self,
        app: Any,
        redis: Any,
        kube: Client,
        namespace: str,
        pools: Sequence[str],
        layout: KeyLayout | None = None,
    ) -> None:
        self.app = app
        self.redis = redis
        self.kube = kube
        self.namespace = namespace
        self.pools = list(pools)
        self.layout = layout or KeyLayout()
        self.tasks: dict[str, TaskRecord] = {}
        self.samples: list[Sample] = []
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._receiver: Any = None
        self._listening = threading.Event()
        self._threads = [
            threading.Thread(target=self._receive, name="task-events", daemon=True),
            threading.Thread(target=self._sample, name="sampler", daemon=True),
        ]

    def start(self) -> Recorder:
        for thread in self._threads:
            thread.start()
        if not self._listening.wait(30):
            raise RuntimeError("the task-event receiver did not connect within 30 s")
        return self

    def stop(self) -> None:
        self._stopping.set()
        if self._receiver is not None:
            self._receiver.should_stop = True
        for thread in self._threads:
            thread.join(timeout=10)

    def expect(self, task_id: str, record: TaskRecord) -> None:
        """Note a sent task; its events may have come first (the worker was quicker)."""
        with self._lock:
            early = self.tasks.get(task_id)
            if early is not None:
                record.starts, record.finished = early.starts, early.finished
            self.tasks[task_id] = record

    def unfinished(self) -> int:
        """Tasks sent and not known to have finished (events of other runs aside)."""
        with self._lock:
            return sum(1 for r in self.tasks.values() if r.pool and r.finished is None)

    def complete_from_results(self) -> int:
        """Fill in, from the result backend, tasks whose events were missed; returns how
        many were."""
        with self._lock:
            missing = [i for i, r in self.tasks.items() if r.pool and r.finished is None]
        if not missing:
            return 0
        found = 0
        replies = self.redis.mget([f"celery-task-meta-{i}" for i in missing])
        for task_id, raw in zip(missing, replies, strict=True):
            if raw is None:
                continue
            meta = json.loads(raw)
            result = meta.get("result")
            if meta.get("status") != "SUCCESS" or not isinstance(result, dict):
                continue
            with self._lock:
                record = self.tasks[task_id]
                if not record.starts:
                    record.starts.append((float(result["started"]), str(result["hostname"])))
                record.finished = float(result["finished"])
            found += 1
        return found

    # -- task events -----------------------------------------------------------------

    def _receive(self) -> None:
        handlers: Mapping[str, Callable[[dict[str, Any]], None]] = {
            "task-started": self._started,
            "task-succeeded": self._finished,
            "task-failed": self._finished,
        }
        while not self._stopping.is_set():
            try:
                with self.app.connection() as connection:
                    self._receiver = self.app.events.Receiver(connection, handlers=handlers)
                    self._listening.set()
                    # No timeout: every reconnect is a gap in which events are lost. The
                    # workers' heartbeats (every 2 s) wake the loop to see should_stop.
                    self._receiver.capture(limit=None, timeout=None, wakeup=False)
            except OSError:
                time.sleep(0.2)

    def _record(self, event: dict[str, Any]) -> TaskRecord:
        with self._lock:
            record = self.tasks.get(event["uuid"])
            if record is None:  # an event before the producer noted the send
                record = TaskRecord(pool="", sent=0.0, seconds=0.0, priority=None)
                self.tasks[event["uuid"]] = record
            return record

    def _started(self, event: dict[str, Any]) -> None:
        record = self._record(event)
        with self._lock:
            record.starts.append((float(event["timestamp"]), str(event["hostname"])))

    def _finished(self, event: dict[str, Any]) -> None:
        record = self._record(event)
        with self._lock:
            record.finished = float(event["timestamp"])

    # -- samples ---------------------------------------------------------------------

    def _sample(self) -> None:
        next_at = time.monotonic()
        while not self._stopping.is_set():
            # A missed sample (the API server busy) is a gap in the plot, not an end.
            with contextlib.suppress(Exception):
                self.samples.extend(self._observe())
            next_at += SAMPLE_SECONDS
            self._stopping.wait(max(0.0, next_at - time.monotonic()))

    def _observe(self) -> list[Sample]:
        now = time.time()
        pipe = self.redis.pipeline(transaction=False)
        for pool in self.pools:
            for key in self.layout.queue_lists(pool):
                pipe.llen(key)
        lengths = pipe.execute()
        steps = len(self.layout.priority_steps)
        replicas = {
            str(d.metadata.name if d.metadata else ""): (d.spec.replicas or 0 if d.spec else 0)
            for d in self.kube.list(Deployment, namespace=self.namespace)
        }
        pods: dict[str, int] = {}
        for pod in self.kube.list(Pod, namespace=self.namespace):
            if pod.status is not None and pod.status.phase in ("Succeeded", "Failed"):
                continue
            owner = pool_of(str(pod.metadata.name if pod.metadata else ""), self.pools)
            if owner is not None:
                pods[owner] = pods.get(owner, 0) + 1
        metrics: dict[str, float] = {}
        for hpa in self.kube.list(HorizontalPodAutoscaler, namespace=self.namespace):
            target = hpa.spec.scaleTargetRef.name
            for metric in (hpa.status.currentMetrics or []) if hpa.status else []:
                if metric.external is not None and metric.external.current is not None:
                    value = metric.external.current.averageValue or metric.external.current.value
                    if value is not None:
                        metrics[target] = _quantity(str(value))
        return [
            Sample(
                at=now,
                pool=pool,
                backlog=sum(lengths[i * steps : (i + 1) * steps]),
                replicas=replicas.get(pool, 0),
                pods=pods.get(pool, 0),
                hpa_metric=metrics.get(pool),
            )
            for i, pool in enumerate(self.pools)
        ]


def _quantity(value: str) -> float:
    """A Kubernetes quantity as the HPA writes metric values (``12``, ``1500m``)."""
    if value.endswith("m"):
        return float(value[:-1]) / 1000
    return float(value)
