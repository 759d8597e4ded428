"""The operator's Prometheus metrics, on a registry of their own choosing (tests use fresh ones).

Each TaskQueue holds its labelled children in a :class:`TaskQueueSeries`: looking a child
up by its labels costs more per poll than the whole Redis round trip at 1,000
TaskQueues, and :meth:`TaskQueueSeries.forget` drops every series of a deleted one.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable
from typing import Any

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram
from stalk_broker.depth import QueueDepth

from stalk_operator.scaling import Load

_TQ = ("namespace", "taskqueue")


class Metrics:
    def __init__(self, registry: CollectorRegistry = REGISTRY) -> None:
        self.backlog = Gauge(
            "stalk_taskqueue_backlog",
            "Messages waiting in every priority list of the TaskQueue's queues.",
            _TQ,
            registry=registry,
        )
        self.in_flight = Gauge(
            "stalk_taskqueue_in_flight",
            "Tasks held by the TaskQueue's workers, not yet acknowledged.",
            _TQ,
            registry=registry,
        )
        self.busy_workers = Gauge(
            "stalk_taskqueue_busy_workers",
            "Workers running or holding at least one task.",
            _TQ,
            registry=registry,
        )
        self.desired_replicas = Gauge(
            "stalk_taskqueue_desired_replicas",
            "Replicas the autoscaler decided on.",
            _TQ,
            registry=registry,
        )
        self.current_replicas = Gauge(
            "stalk_taskqueue_current_replicas",
            "Replicas of the worker Deployment.",
            _TQ,
            registry=registry,
        )
        self.broker_up = Gauge(
            "stalk_taskqueue_broker_up",
            "1 when the TaskQueue's broker was read at the last poll.",
            _TQ,
            registry=registry,
        )
        self.queue_length = Gauge(
            "stalk_queue_length",
            "Messages waiting in one priority list of one queue.",
            (*_TQ, "queue", "priority"),
            registry=registry,
        )
        self.scale_events = Counter(
            "stalk_scale_events",
            "Replica changes made by the autoscaler.",
            (*_TQ, "direction"),
            registry=registry,
        )
        self.reconcile_errors = Counter(
            "stalk_reconcile_errors",
            "Failures to reconcile or scale a TaskQueue.",
            _TQ,
            registry=registry,
        )
        self.poll_duration = Histogram(
            "stalk_broker_poll_duration_seconds",
            "Time of one pipelined round trip reading every TaskQueue of a broker.",
            ("broker",),
            registry=registry,
            buckets=(
                *(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.25),
                *(0.5, 1, 2.5),
            ),
        )
        self.broker_errors = Counter(
            "stalk_broker_errors",
            "Round trips to a broker that failed.",
            ("broker",),
            registry=registry,
        )

    def series(self, namespace: str, name: str) -> TaskQueueSeries:
        return TaskQueueSeries(self, namespace, name)


class TaskQueueSeries:
    """One TaskQueue's series, set only when a value changes."""

    _GAUGES = ("backlog", "in_flight", "busy_workers", "desired_replicas", "current_replicas")

    def __init__(self, metrics: Metrics, namespace: str, name: str) -> None:
        self._metrics = metrics
        self._labels = (namespace, name)
        self._gauges: dict[str, Any] = {}
        self._values: dict[Any, float] = {}
        self._depths: dict[tuple[str, str], Any] = {}

    def _set(self, name: str, value: float) -> None:
        child = self._gauges.get(name)
        if child is None:
            child = self._gauges[name] = getattr(self._metrics, name).labels(*self._labels)
        if self._values.get(name) != value:
            child.set(value)
            self._values[name] = value

    def record(self, load: Load | None, desired: int, current: int) -> None:
        self._set("broker_up", 0 if load is None else 1)
        self._set("desired_replicas", desired)
        self._set("current_replicas", current)
        if load is not None:
            self._set("backlog", load.backlog)
            self._set("in_flight", load.in_flight)
            self._set("busy_workers", load.busy_workers)

    def record_depths(self, depths: Iterable[QueueDepth]) -> None:
        for depth in depths:
            for step, length in depth.by_step.items():
                key = (depth.queue, str(step))
                child = self._depths.get(key)
                if child is None:
                    child = self._depths[key] = self._metrics.queue_length.labels(
                        *self._labels, *key
                    )
                if self._values.get(key) != length:
                    child.set(length)
                    self._values[key] = length

    def scaled(self, direction: str) -> None:
        self._metrics.scale_events.labels(*self._labels, direction).inc()

    def failed(self) -> None:
        self._metrics.reconcile_errors.labels(*self._labels).inc()

    def forget(self) -> None:
        """Drop every series of this TaskQueue, so dashboards do not show it forever."""
        metrics = self._metrics
        for name in self._gauges:
            with contextlib.suppress(KeyError):
                getattr(metrics, name).remove(*self._labels)
        for key in self._depths:
            with contextlib.suppress(KeyError):
                metrics.queue_length.remove(*self._labels, *key)
        for counter in (metrics.reconcile_errors,):
            with contextlib.suppress(KeyError):
                counter.remove(*self._labels)
        for direction in ("up", "down"):
            with contextlib.suppress(KeyError):
                metrics.scale_events.remove(*self._labels, direction)
        self._gauges.clear()
        self._depths.clear()
        self._values.clear()
