"""Everything one TaskQueue reports, in one place: status and conditions, metrics, and
the Events that mark a change of state. No I/O: the loop writes what this returns."""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from typing import Any

from stalk_operator.broker import PoolObservation, Snapshot
from stalk_operator.faults import Fault
from stalk_operator.model import TaskQueue
from stalk_operator.reporting import conditions, events
from stalk_operator.reporting.metrics import Figures
from stalk_operator.reporting.status import Counts, StatusReport, StatusWriter
from stalk_operator.scaling import Decision, Reason
from stalk_operator.scaling.waiting import PushTime
from stalk_operator.settings import OperatorSettings
from stalk_operator.workload import DeploymentState

_URGENT = frozenset({Reason.SCALED_UP, Reason.SCALED_DOWN, Reason.OUT_OF_BOUNDS, Reason.FALLBACK})


class Reporter:
    def __init__(
        self, taskqueue: TaskQueue, found: Mapping[str, Any], settings: OperatorSettings
    ) -> None:
        self.figures = Figures(taskqueue.namespace, taskqueue.name)
        """What the metrics show; the collector reads it at scrape time."""
        # What the object already says counts as written: a restarted operator rewrites
        # only what changed.
        self.writer = StatusWriter(
            settings.status_interval_seconds,
            written={k: v for k, v in found.items() if k != "conditions"},
            conditions=list(found.get("conditions") or []),
        )
        self.last_scale_time: str | None = found.get("lastScaleTime")
        self.broker_ok: bool | None = None
        self._unobserved_since: float | None = None
        self._verdict_pending = False
        self._blocked: str | None = None
        self._waiting = False
        """Tasks wait: their age grows with time alone, and the status shows it."""

    @property
    def settled(self) -> bool:
        """False while the report would change with time alone (a verdict on busy-worker
        protection still pending, counts waiting for the status interval, the age of
        waiting tasks): the loop must not skip its next cycles."""
        return not (self._verdict_pending or self.writer.withheld or self._waiting)

    @property
    def last_scale_seconds(self) -> float | None:
        return conditions.parse_timestamp(self.last_scale_time)

    def observed(
        self, snapshot: Snapshot, observation: PoolObservation | None
    ) -> list[events.Event]:
        """The metrics' view of the queues; an Event when the broker is lost or back."""
        if observation is not None:
            self.figures.depths = observation.depths
            self.figures.oldest_pushed = observation.oldest_pushed
        event = events.broker_changed(self.broker_ok, snapshot.error, snapshot.broker)
        self.broker_ok = snapshot.error is None
        return [event] if event is not None else []

    def decided(
        self,
        taskqueue: TaskQueue,
        snapshot: Snapshot,
        observation: PoolObservation | None,
        decision: Decision,
        deployment: DeploymentState,
        fault: Fault | None,
        *,
        now: float,
    ) -> dict[str, Any] | None:
        """The status patch after a decision, or ``None`` when the last write stands."""
        figures = self.figures
        figures.desired_replicas, figures.current_replicas = decision.replicas, deployment.current
        figures.ready_replicas = deployment.ready
        figures.broker_up = 0 if observation is None else 1
        figures.target_wait_seconds = taskqueue.scaling.target_wait_seconds
        counts, source = None, None
        if observation is not None:
            source = observation.source
            figures.backlog = observation.backlog
            figures.in_flight = observation.in_flight
            figures.busy_workers = observation.busy_workers
            counts = Counts(
                backlog=observation.backlog,
                in_flight=observation.in_flight,
                busy_workers=observation.busy_workers,
                backlog_by_queue={d.queue: d.total for d in observation.depths},
                in_flight_source=observation.source,
                oldest_wait=_wait(observation.pool_oldest_pushed, now),
                # Every queue, 0 when none waits: a merge patch removes only keys set null.
                oldest_wait_by_queue={
                    d.queue: _wait(pushed, now) or 0.0
                    for d, pushed in zip(
                        observation.depths,
                        itertools.chain(observation.oldest_pushed, itertools.repeat(None)),
                        strict=False,
                    )
                },
            )
            self._waiting = observation.backlog > 0
        report = StatusReport(
            generation=taskqueue.generation,
            conditions=conditions.with_fault(
                [
                    conditions.ready_condition(decision.replicas, deployment.ready),
                    conditions.broker_condition(snapshot.error, snapshot.broker),
                    conditions.scaling_condition(
                        decision.reason, decision.replicas, decision.recommended
                    ),
                    conditions.protection_condition(
                        source, deployment.ready, self._unobserved(source, deployment, now)
                    ),
                ],
                fault,
            ),
            desired_replicas=decision.replicas,
            current_replicas=deployment.current,
            ready_replicas=deployment.ready,
            broker=snapshot.broker,
            deployment=taskqueue.deployment_name,
            last_scale_time=self.last_scale_time,
            counts=counts,
            urgent=decision.reason in _URGENT,
        )
        return self.writer.patch(report, now)

    def _unobserved(self, source: str | None, deployment: DeploymentState, now: float) -> float:
        """How long ready workers have given no source of busy workers."""
        if source in ("Agent", "RemoteControl") or deployment.ready == 0:
            self._unobserved_since, self._verdict_pending = None, False
            return 0.0
        if self._unobserved_since is None:
            self._unobserved_since = now
        unobserved = now - self._unobserved_since
        self._verdict_pending = unobserved < conditions.UNOBSERVED_GRACE_SECONDS
        return unobserved

    def blocked(
        self, taskqueue: TaskQueue, deployment: DeploymentState | None
    ) -> list[events.Event]:
        """A Warning when another object's Deployment starts to stand in the way; none
        while it stays, nor while an earlier TaskQueue of this name is being deleted."""
        condition = None
        if deployment is not None and not deployment.owned_by(taskqueue.uid):
            condition = _blocked(taskqueue, deployment)
        reason = condition.reason if condition is not None else None
        news = reason != self._blocked and reason == "DeploymentNotOwned"
        self._blocked = reason
        if condition is None or not news:
            return []
        return [events.Event(events.WARNING, condition.reason, condition.message)]

    def waiting(
        self,
        taskqueue: TaskQueue,
        deployment: DeploymentState | None,
        fault: Fault | None,
        now: float,
    ) -> dict[str, Any] | None:
        """The status while no decision can be made, if there is anything to tell."""
        found: list[conditions.Condition] = []
        if deployment is not None and not deployment.owned_by(taskqueue.uid):
            found.append(_blocked(taskqueue, deployment))
        if fault is not None:
            found.append(conditions.fault_condition(fault))
        if not found:
            return None
        report = StatusReport(
            generation=taskqueue.generation,
            conditions=found,
            deployment=taskqueue.deployment_name,
        )
        return self.writer.patch(report, now)

    def written(self, patch: Mapping[str, Any], now: float) -> None:
        self.writer.written_ok(patch, now)

    def scaled(self, up: bool, now: float) -> None:
        self.last_scale_time = conditions.timestamp(now)
        if up:
            self.figures.scaled_up += 1
        else:
            self.figures.scaled_down += 1

    def failed(self) -> None:
        self.figures.errors += 1


def _blocked(taskqueue: TaskQueue, deployment: DeploymentState) -> conditions.Condition:
    name = f"Deployment {taskqueue.namespace}/{taskqueue.deployment_name}"
    if deployment.owner is None:
        return conditions.blocked_condition(
            "DeploymentNotOwned", f"{name} exists and is not Stalk's: delete or rename it"
        )
    kind, owner, _ = deployment.owner
    if kind == "TaskQueue" and owner == taskqueue.name:
        return conditions.blocked_condition(
            "WaitingForOldDeployment",
            f"{name} still belongs to an earlier TaskQueue of this name; waiting for its deletion",
        )
    return conditions.blocked_condition(
        "DeploymentNotOwned", f"{name} belongs to {kind} {owner}: delete or rename it"
    )


def _wait(pushed: PushTime | None, now: float) -> float | None:
    """A wait as the status shows it: two significant figures (1.5, 12, 340, 4100), so
    that a growing age is rewritten only when it moves by about a tenth or more."""
    if pushed is None:
        return None
    seconds = pushed.age(now).seconds
    return float(f"{seconds:.2g}") if seconds >= 1 else round(seconds, 1)
