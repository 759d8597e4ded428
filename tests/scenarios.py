"""Scenarios several e2e tests and benchmarks run: real workers behind the operator's pods."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from celery import Celery
from kube import ReplicaWatch, wait_for
from stalk_devenv.stack import WORKER_LABELS
from taskqueues import taskqueue
from workers import client_app, client_env


@dataclass(frozen=True)
class App:
    """A Celery app as a TaskQueue runs it, and how a test sends it a task that sleeps."""

    worker: Mapping[str, Any] = field(default_factory=dict)
    """``spec.worker`` fields (image, app, agent) beside the scenario's own."""

    sleep: str = "stalk_worker.tasks.canvas.sleep"
    """A task that sleeps and returns ``{hostname, finished, seconds}``."""

    sleep_args: Callable[[float, str], tuple[Any, ...]] = lambda seconds, label: (seconds, label)
    """Its arguments for a number of seconds and a label."""

    images: Mapping[str, Path] = field(default_factory=dict)
    """For the process kubelet: the app's image name to its virtualenv's bin directory."""

    client: Callable[[Any], Any] = lambda redis_db: client_app(client_env(redis_db))
    """A context manager yielding a Celery app that sends to the test Redis."""


STALK_APP = App()


def plain_client(url: str) -> Any:
    """A bare Celery client, for a team's app (it shares only task names with it)."""
    from contextlib import contextmanager

    @contextmanager
    def open_client(redis_db: Any) -> Any:
        client = Celery("client", broker=url, backend=url, set_as_current=False)
        client.conf.update(accept_content=["json"], task_serializer="json")
        yield client

    return open_client


LONG_TASK_SECONDS = 16
"""The grace scenario's long tasks: still running ~10 s after the pool starts to shrink."""
GRACE_SECONDS = 6


def grace_scenario(
    cluster,
    namespace,
    stalk_operator,
    process_kubelet,
    redis_db,
    redis_password,
    *,
    deletion_cost: bool,
    app: App = STALK_APP,
    busy_known: bool = True,
):
    """4 workers; 2 finish short tasks and go idle while 2 run long ones; the pool must
    shrink to 2 and then, once the long tasks end, to 0. Returns what happened."""
    stalk_operator(STALK_POD_DELETION_COST=str(deletion_cost).lower())
    kubelet = process_kubelet(namespace, WORKER_LABELS, images=dict(app.images))
    cluster.apply(
        taskqueue(
            "crunch",
            ["crunch"],
            # A grace period shorter than what is left of the long tasks when the pool
            # shrinks: a busy worker chosen as a victim is killed mid-task, so the test
            # sees every wrong choice; long enough for an idle worker's warm shutdown on
            # a loaded machine (3 s was not, in CI).
            worker={
                **app.worker,
                "concurrency": 1,
                "taskTimeLimitSeconds": 60,
                "terminationGracePeriodSeconds": GRACE_SECONDS,
            },
            scaling={
                "minReplicas": 4,
                "maxReplicas": 4,
                "targetTasksPerReplica": 1,
                "scaleDown": {"stabilizationWindowSeconds": 3, "stepIntervalSeconds": 0},
            },
        ),
        namespace=namespace,
    )
    watch = ReplicaWatch(cluster.kubeconfig, namespace, "crunch")
    watch.wait_for(4, 15)
    wait_for(lambda: len(kubelet.running_pods()) == 4, 60, "4 worker processes")
    wait_for(lambda: ready_workers(kubelet) == 4, 90, "4 workers ready")
    if app.worker.get("agent") != "Disabled":
        pool_key = f"stalk:pool:{namespace}/crunch"
        wait_for(lambda: redis_db.client().hlen(pool_key) == 4, 30, "4 workers reporting load")
    with app.client(redis_db) as client:
        durations = [1, 1, LONG_TASK_SECONDS, LONG_TASK_SECONDS]
        results = [
            client.send_task(app.sleep, args=app.sleep_args(d, f"task-{i}"), queue="crunch")
            for i, d in enumerate(durations)
        ]
        # Each worker holds one task at most (concurrency 1, prefetch 1): an empty list
        # means every task went to a worker of its own.
        wait_for(lambda: redis_db.client().llen("crunch") == 0, 30, "every task taken")
        cluster.kubectl(
            "patch",
            "tq",
            "crunch",
            "--type=merge",
            "-p",
            '{"spec":{"scaling":{"minReplicas":0}}}',
            namespace=namespace,
        )
        if busy_known:  # the two busy workers hold the pool
            watch.wait_for(2, 30)
        outcomes = []
        for result in results:
            try:
                outcomes.append(result.get(timeout=LONG_TASK_SECONDS + 15))
            except Exception:
                outcomes.append(None)
    watch.wait_for(0, 30)
    wait_for(lambda: not kubelet.running_pods(), 30, "every worker process to stop")
    wait_for(lambda: len(kubelet.finished) == 4, 30, "all 4 pods to be finished")
    killed = [p for p in kubelet.finished if p.exit_codes.get("worker") not in (0, None)]
    return {
        "history": watch.values,
        "wall_history": watch.wall_history,
        "outcomes": outcomes,
        "killed_pods": len(killed),
        "unfinished_tasks": outcomes.count(None),
        "status": cluster.taskqueue_status(namespace, "crunch"),
    }


def ready_workers(kubelet) -> int:
    """Worker processes that logged Celery's "ready." (any app logs it)."""
    logs = [kubelet.log_path(p.namespace, p.name, "worker") for p in kubelet.running_pods()]
    return sum(1 for log in logs if log.exists() and " ready." in log.read_text(errors="replace"))
