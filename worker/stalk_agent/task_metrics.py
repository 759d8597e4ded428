"""What each task does, per task name and queue, for Prometheus: received, started,
finished (by state), run time, and how long it waited in its queue.

Flower's ``/metrics`` (which the chart also scrapes) counts task events per task name and
*worker*; it cannot say which queue a task came from, nor how long it waited, since no
Celery event carries the send time. The agent knows both: the queue from the message's
delivery info, and the send time from producers that stamp it (:mod:`stalk_agent.
publish`); the wait is ``start - max(sent, eta)``. Its series carry the pod's namespace
and TaskQueue through the chart's PodMonitor, so they sum per TaskQueue.

Tasks run in the prefork pool's child processes, so the metrics live in
prometheus-client's multiprocess mode (one memory-mapped file per process in
``PROMETHEUS_MULTIPROC_DIR``, which the operator points at an ``emptyDir``); the agent's
HTTP server in the main process adds up the files on ``/metrics``. Children forked later
(``--max-tasks-per-child``) inherit the receivers; the files of those that exit keep
their counts, as counters should (each recycled child leaves its files: with a small
``--max-tasks-per-child`` a scrape reads more of them as the pod ages). An app that
uses prometheus-client in multiprocess mode writes to the same directory, so its own
metrics show on the agent's ``/metrics`` too; the live gauges of a child that exits are
dropped, as prometheus-client asks. Tasks started without a stamp are started minus the
wait histogram's count. A task killed by its hard time limit never reaches
``task_postrun``: Flower's failure count has it, this one does not.
"""

from __future__ import annotations

import logging
import os
import sys
import tempfile
import time
from datetime import datetime
from typing import Any

from celery import signals
from stalk_broker.pool_reader import PUBLISHED_AT_HEADER

from stalk_agent import prometheus

logger = logging.getLogger(__name__)

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"

WAIT_BUCKETS = (0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600)
"""From a task taken at once to one an hour late: the span of the wait targets a
TaskQueue accepts up to its useful end."""

RUNTIME_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600)

_DISPATCH_UID = "stalk-agent-task-metrics"


def _labels(request: Any, fallback_name: str = "") -> tuple[str, str]:
    """(task name, queue) of a task request, in a worker's main process or a child."""
    # A main-process Request names it `name` (its `task` is the task object); a running
    # task's context names it `task`.
    candidates = (getattr(request, "name", None), getattr(request, "task", None))
    name = next((c for c in candidates if isinstance(c, str) and c), fallback_name)
    queue = (getattr(request, "delivery_info", None) or {}).get("routing_key") or ""
    return str(name), str(queue)


class TaskMetrics:
    """The agent's task metrics: written from any process, read from the main one."""

    def __init__(self, directory: str) -> None:
        from prometheus_client import CollectorRegistry, Counter, Histogram, multiprocess

        self.directory = directory
        labels = ["task", "queue"]
        # Not in the default registry: an app that serves it does not serve these twice.
        self.received = Counter(
            "stalk_tasks_received",
            "Tasks this worker took from the broker (prefetched or run at once).",
            labels,
            registry=None,
        )
        self.started_total = Counter(
            "stalk_tasks_started", "Tasks that started to run.", labels, registry=None
        )
        self.finished = Counter(
            "stalk_tasks_finished",
            "Tasks that ran to an end, by Celery state (SUCCESS, FAILURE, RETRY, ...).",
            [*labels, "state"],
            registry=None,
        )
        self.runtime = Histogram(
            "stalk_task_runtime_seconds",
            "How long tasks ran, from start to end.",
            labels,
            buckets=RUNTIME_BUCKETS,
            registry=None,
        )
        self.queue_wait = Histogram(
            "stalk_task_queue_wait_seconds",
            "From a task's send (or its ETA) to its start, for tasks sent with a stamp.",
            labels,
            buckets=WAIT_BUCKETS,
            registry=None,
        )
        self._running: dict[str, float] = {}
        """Start times of the tasks this process runs, by task id."""
        self.registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(self.registry, path=directory)  # type: ignore[no-untyped-call]

    # Receivers never let a metric fail a task (Celery would log it as the task's error).

    def on_received(self, request: Any = None, **_: Any) -> None:
        """``task_received``, in the main process."""
        try:
            self.received.labels(*_labels(request)).inc()
        except Exception:
            logger.debug("cannot count a received task", exc_info=True)

    def started(self, task: Any, task_id: str = "", **_: Any) -> None:
        """``task_prerun``, in the process that runs the task."""
        try:
            now = time.time()
            request = task.request
            labels = _labels(request, task.name)
            self._running[task_id] = now
            self.started_total.labels(*labels).inc()
            waited = queue_wait(request, now)
            if waited is not None:
                self.queue_wait.labels(*labels).observe(waited)
        except Exception:
            logger.debug("cannot record a task's start", exc_info=True)

    def ended(self, task: Any, task_id: str = "", state: str | None = None, **_: Any) -> None:
        """``task_postrun``, in the process that ran the task."""
        try:
            labels = _labels(task.request, task.name)
            began = self._running.pop(task_id, None)
            if began is not None:
                self.runtime.labels(*labels).observe(max(0.0, time.time() - began))
            self.finished.labels(*labels, state or "UNKNOWN").inc()
        except Exception:
            logger.debug("cannot record a task's end", exc_info=True)

    def child_exited(self, pid: int | None = None, **_: Any) -> None:
        """``worker_process_shutdown``, in the exiting child: its live gauges (an app's)
        must not outlive it."""
        from prometheus_client import multiprocess

        try:
            multiprocess.mark_process_dead(pid or os.getpid(), self.directory)  # type: ignore[no-untyped-call]
        except Exception:
            logger.debug("cannot drop an exiting child's gauges", exc_info=True)

    def connect(self) -> None:
        for signal, receiver in (
            (signals.task_received, self.on_received),
            (signals.task_prerun, self.started),
            (signals.task_postrun, self.ended),
            (signals.worker_process_shutdown, self.child_exited),
        ):
            signal.connect(receiver, weak=False, dispatch_uid=f"{_DISPATCH_UID}-{signal.name}")

    def exposition(self) -> tuple[bytes, str]:
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        return generate_latest(self.registry), CONTENT_TYPE_LATEST


def queue_wait(request: Any, now: float) -> float | None:
    """Seconds from the stamped send (or the ETA, for a task sent for later) to ``now``;
    ``None`` when the producer did not stamp it."""
    stamp = getattr(request, PUBLISHED_AT_HEADER, None)
    if stamp is None:
        stamp = (getattr(request, "headers", None) or {}).get(PUBLISHED_AT_HEADER)
    if stamp is None:
        return None
    due = float(stamp)
    eta = getattr(request, "eta", None)
    if eta:
        due = max(due, datetime.fromisoformat(str(eta)).timestamp())
    return max(0.0, now - due)


_enabled: TaskMetrics | None = None


def enable() -> TaskMetrics | None:
    """Start recording, in the worker's main process before the pool forks; ``None``
    (and one warning) when the process already uses prometheus-client in single-process
    mode, whose values a pool child would keep to itself."""
    global _enabled
    if _enabled is not None:
        return _enabled
    directory = os.environ.get(MULTIPROC_ENV)
    if not directory:
        if "prometheus_client" in sys.modules:
            logger.warning(
                "task wait metrics off: prometheus-client was imported before the agent "
                "without %s set (set it to an empty writable directory)",
                MULTIPROC_ENV,
            )
            return None
        directory = tempfile.mkdtemp(prefix="stalk-agent-metrics-")
        os.environ[MULTIPROC_ENV] = directory
    prometheus.load()
    from prometheus_client import values

    if not getattr(values.ValueClass, "_multiprocess", False):
        logger.warning(
            "task wait metrics off: prometheus-client was imported before %s was set",
            MULTIPROC_ENV,
        )
        return None
    os.makedirs(directory, exist_ok=True)
    _enabled = TaskMetrics(directory)
    _enabled.connect()
    return _enabled
