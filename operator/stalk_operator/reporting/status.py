"""The TaskQueue's status: its fields, and when to write them. Pure.

The one place that knows the status field names of the CRD. Changes that a user acts on
(replicas, conditions) are written at once; counts that move every poll are written at
most every ``interval`` seconds, so 1,000 busy TaskQueues do not flood the API server.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from stalk_operator.reporting.conditions import Condition, merge_conditions


@dataclass(frozen=True)
class Counts:
    """What the last poll saw."""

    backlog: int
    in_flight: int
    busy_workers: int
    backlog_by_queue: Mapping[str, int]
    in_flight_source: str
    oldest_wait: float | None = None
    oldest_wait_by_queue: Mapping[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class StatusReport:
    """Everything the status says after one cycle."""

    generation: int
    conditions: Sequence[Condition]
    desired_replicas: int | None = None
    current_replicas: int | None = None
    ready_replicas: int | None = None
    broker: str | None = None
    deployment: str | None = None
    last_scale_time: str | None = None
    counts: Counts | None = None
    urgent: bool = False
    """Written at once (a scale or a fallback), not only when the interval is due."""

    def fields(self) -> dict[str, Any]:
        """The status fields as the CRD names them, conditions aside."""
        values: dict[str, Any] = {
            "observedGeneration": self.generation,
            "desiredReplicas": self.desired_replicas,
            "currentReplicas": self.current_replicas,
            "readyReplicas": self.ready_replicas,
            "broker": self.broker,
            "deployment": self.deployment,
            "lastScaleTime": self.last_scale_time,
        }
        if self.counts is not None:
            values.update(
                backlog=self.counts.backlog,
                inFlight=self.counts.in_flight,
                busyWorkers=self.counts.busy_workers,
                backlogByQueue=dict(self.counts.backlog_by_queue),
                inFlightSource=self.counts.in_flight_source,
                oldestWaitSeconds=self.counts.oldest_wait or 0,
                oldestWaitByQueue=dict(self.counts.oldest_wait_by_queue),
            )
        return {key: value for key, value in values.items() if value is not None}


@dataclass
class StatusWriter:
    """Decides whether a report is worth a write, and builds the merge patch."""

    interval: float
    """Least seconds between two writes when only counts changed."""

    written: dict[str, Any] = field(default_factory=dict)
    """The fields of our last write (we alone write status, so this is the truth)."""

    conditions: list[dict[str, Any]] = field(default_factory=list)
    """The conditions as last written, or as found on the object after a restart."""

    written_at: float = float("-inf")

    withheld: bool = False
    """A change waits for the interval: the loop must run again (not skip its unchanged
    cycles) until it is written."""

    def patch(self, report: StatusReport, now: float) -> dict[str, Any] | None:
        """The status to write now, or ``None`` when the last write still stands."""
        fields = report.fields()
        before = {c.get("type"): c for c in self.conditions}
        transition = any(
            before.get(c.type, {}).get("status") != c.status for c in report.conditions
        )
        changed = any(self.written.get(key) != value for key, value in fields.items()) or any(
            (before[c.type].get("reason"), before[c.type].get("message")) != (c.reason, c.message)
            for c in report.conditions
        )
        due = now - self.written_at >= self.interval
        if not (report.urgent or transition or (due and changed)):
            self.withheld = changed
            return None
        conditions = merge_conditions(self.conditions, report.conditions, report.generation, now)
        return {**fields, "conditions": conditions}

    def written_ok(self, patch: Mapping[str, Any], now: float) -> None:
        """Record a write that the API server accepted."""
        self.written = {k: v for k, v in patch.items() if k != "conditions"}
        self.conditions = list(patch["conditions"])
        self.written_at = now
        self.withheld = False
