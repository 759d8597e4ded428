"""The operator's Prometheus metrics, on a registry of their own choosing (tests use fresh ones)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterable
from typing import Any

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram
from stalk_broker.depth import QueueDepth

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
        self.poll_duration = Histogram(
            "stalk_broker_poll_duration_seconds",
            "Time of one pipelined round trip reading every TaskQueue of a broker.",
            ("broker",),
            registry=registry,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
        )
        self.broker_errors = Counter(
            "stalk_broker_errors",
            "Round trips to a broker that failed.",
            ("broker",),
            registry=registry,
        )
        self.broker_up = Gauge(
            "stalk_taskqueue_broker_up",
            "1 when the TaskQueue's broker was read at the last poll.",
            _TQ,
            registry=registry,
        )
        self._queue_length_children: dict[tuple[str, str, str, str], list[Any]] = {}
        self.reconcile_errors = Counter(
            "stalk_reconcile_errors",
            "Failures to reconcile or scale a TaskQueue.",
            _TQ,
            registry=registry,
        )

    def record_depths(self, pool: str, depths: Iterable[QueueDepth]) -> None:
        # Called for every pool on every poll: keep the labelled children, since looking
        # them up again costs more than the whole Redis round trip.
        namespace, name = pool.split("/", 1)
        for depth in depths:
            for step, length in depth.by_step.items():
                key = (namespace, name, depth.queue, str(step))
                known = self._queue_length_children.get(key)
                if known is None:
                    known = self._queue_length_children[key] = [self.queue_length.labels(*key), -1]
                if known[1] != length:
                    known[0].set(length)
                    known[1] = length

    def forget(self, namespace: str, name: str) -> None:
        """Drop a deleted TaskQueue's series so dashboards do not show it forever."""
        for gauge in (
            self.backlog,
            self.in_flight,
            self.busy_workers,
            self.desired_replicas,
            self.current_replicas,
            self.broker_up,
        ):
            with contextlib.suppress(KeyError):
                gauge.remove(namespace, name)
        for labels in [k for k in self._queue_length_children if k[:2] == (namespace, name)]:
            del self._queue_length_children[labels]
            self.queue_length.remove(*labels)
