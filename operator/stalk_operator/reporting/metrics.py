"""The operator's Prometheus metrics, on a registry of their own choosing (tests use fresh ones).

Per-TaskQueue series are not kept as prometheus_client children: a labelled child costs
about 600 bytes and a lock, and 10,000 TaskQueues have about ten series each. Each loop
keeps its last figures in a :class:`Figures` (a few slots), and a collector reads them
all at scrape time. A deleted TaskQueue's series vanish with its loop. Broker-level
metrics are ordinary collectors.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from stalk_broker.depth import QueueDepth

from stalk_operator.scaling.waiting import PushTime

_TQ = ["namespace", "taskqueue"]


@dataclass(slots=True)
class Figures:
    """One TaskQueue's figures as of its last cycle."""

    namespace: str
    name: str
    backlog: int | None = None
    in_flight: int | None = None
    busy_workers: int | None = None
    desired_replicas: int | None = None
    current_replicas: int | None = None
    ready_replicas: int | None = None
    broker_up: int | None = None
    target_wait_seconds: float | None = None
    depths: tuple[QueueDepth, ...] = ()
    oldest_pushed: tuple[PushTime | None, ...] = ()
    """Per queue (as ``depths``), when its oldest waiting message was pushed."""
    scaled_up: int = 0
    scaled_down: int = 0
    errors: int = 0


_GAUGES = (
    ("backlog", "stalk_taskqueue_backlog",
     "Messages waiting in every priority list of the TaskQueue's queues."),
    ("in_flight", "stalk_taskqueue_in_flight",
     "Tasks held by the TaskQueue's workers, not yet acknowledged."),
    ("busy_workers", "stalk_taskqueue_busy_workers",
     "Workers running or holding at least one task."),
    ("desired_replicas", "stalk_taskqueue_desired_replicas", "Replicas the autoscaler decided on."),
    ("current_replicas", "stalk_taskqueue_current_replicas", "Replicas of the worker Deployment."),
    ("ready_replicas", "stalk_taskqueue_ready_replicas",
     "Ready replicas of the worker Deployment: pods that started and stay up."),
    ("broker_up", "stalk_taskqueue_broker_up",
     "1 when the TaskQueue's broker was read at the last poll."),
    ("target_wait_seconds", "stalk_taskqueue_target_wait_seconds",
     "spec.scaling.targetWaitSeconds, where set: what StalkWaitAboveTarget compares with."),
)  # fmt: skip


class TaskQueueCollector(Collector):
    """Every TaskQueue's series, read from the loops' figures at scrape time."""

    def __init__(self) -> None:
        self.source: Callable[[], Iterable[Figures]] = tuple
        """Where the figures come from: the fleet's loops."""

    def collect(self) -> Iterator[Metric]:
        everything = list(self.source())
        for attribute, name, documentation in _GAUGES:
            family = GaugeMetricFamily(name, documentation, labels=_TQ)
            for f in everything:
                value = getattr(f, attribute)
                if value is not None:
                    family.add_metric([f.namespace, f.name], value)
            yield family
        lengths = GaugeMetricFamily(
            "stalk_queue_length",
            "Messages waiting in one priority list of one queue.",
            labels=[*_TQ, "queue", "priority"],
        )
        scales = CounterMetricFamily(
            "stalk_scale_events",
            "Replica changes made by the autoscaler.",
            labels=[*_TQ, "direction"],
        )
        errors = CounterMetricFamily(
            "stalk_reconcile_errors", "Failures to reconcile or scale a TaskQueue.", labels=_TQ
        )
        waits = GaugeMetricFamily(
            "stalk_queue_oldest_wait_seconds",
            "How long the oldest waiting message of the queue has waited, over every "
            "priority list: exact for stamped messages, else the middle of its bounds.",
            labels=[*_TQ, "queue"],
        )
        now = time.time()
        # Only what carries information: a priority list's length when it has messages
        # (step 0 always), and counters once they count. 10,000 idle TaskQueues then cost
        # six series each, not thirteen, and a scrape stays well under a second.
        for f in everything:
            labels = [f.namespace, f.name]
            for depth in f.depths:
                for step, length in depth.by_step.items():
                    if length or step == 0:
                        lengths.add_metric([*labels, depth.queue, str(step)], length)
            for depth, pushed in zip(f.depths, f.oldest_pushed, strict=False):
                if pushed is not None:
                    waits.add_metric([*labels, depth.queue], round(pushed.age(now).seconds, 3))
            if f.scaled_up:
                scales.add_metric([*labels, "up"], f.scaled_up)
            if f.scaled_down:
                scales.add_metric([*labels, "down"], f.scaled_down)
            if f.errors:
                errors.add_metric(labels, f.errors)
        yield from (lengths, waits, scales, errors)

    def describe(self) -> Iterator[Metric]:
        return iter(())  # unchecked: the names are fixed above


class Metrics:
    def __init__(self, registry: CollectorRegistry = REGISTRY) -> None:
        self.taskqueues = TaskQueueCollector()
        registry.register(self.taskqueues)
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
