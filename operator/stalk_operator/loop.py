"""One TaskQueue's scaling loop: observe, decide, act, report.

The broker's poller hands every snapshot to :meth:`TaskQueueLoop.offer`. Observing and
deciding are synchronous and cheap, so an idle TaskQueue costs no task and no write;
what needs the API server (apply the Deployment, mark deletion costs, patch replicas,
write status) becomes one :class:`Plan`, carried out by at most one task per TaskQueue.
Snapshots arriving meanwhile are folded into the newest.

Nothing ends a loop: a failure is a :class:`~stalk_operator.faults.Fault`, shown on the
TaskQueue, and retried after a short backoff.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from stalk_operator import pod_policy
from stalk_operator.actuation import Kubernetes
from stalk_operator.broker import PollerRegistry, PoolSubscriber, Snapshot
from stalk_operator.faults import (
    INTERNAL_ERROR,
    KUBERNETES_UNREACHABLE,
    Fault,
    FaultTracker,
)
from stalk_operator.model import TaskQueue
from stalk_operator.reporting import events
from stalk_operator.reporting.report import Reporter
from stalk_operator.rollout import Rollout
from stalk_operator.scaling import Decision, Load, decide
from stalk_operator.scaling.memory import DecisionMemory
from stalk_operator.settings import OperatorSettings
from stalk_operator.workload import DeploymentState, selector_labels

logger = logging.getLogger(__name__)

EventSink = Callable[[TaskQueue, events.Event], None]


@dataclass
class LoopContext:
    """What a loop needs from outside: all I/O enters here."""

    settings: OperatorSettings
    kube: Kubernetes
    pollers: PollerRegistry
    post_event: EventSink
    writers: asyncio.Semaphore
    """Slots for TaskQueues writing to the API server (``STALK_API_CONCURRENCY``)."""
    clock: Callable[[], float] = time.time


@dataclass
class Plan:
    """The writes one cycle needs, in the order they are made."""

    apply: bool = False
    decision: Decision | None = None
    current: int = 0
    load: Load | None = None
    status: dict[str, Any] | None = None
    events: list[events.Event] = field(default_factory=list)
    reported: Callable[[Fault | None], dict[str, Any] | None] | None = None
    """How ``status`` was made, to make it again without the fault once writes succeed."""


class TaskQueueLoop:
    def __init__(self, context: LoopContext, taskqueue: TaskQueue, status: Mapping[str, Any]):
        self.ctx = context
        self.taskqueue = taskqueue
        self.deployment: DeploymentState | None = None
        self.report = Reporter(taskqueue, status, context.settings)
        self.faults = FaultTracker()
        self.memory = DecisionMemory(self.report.last_scale_seconds)
        self.rollout = Rollout(bool(status.get("deployment")), context.clock())
        self.subscriber = PoolSubscriber(context.pollers)
        self._acting: asyncio.Task[None] | None = None
        self.acting_since: float | None = None
        """Monotonic time the write in progress began; the liveness check bounds it."""
        self._next: Snapshot | None = None
        self.last_cycle = time.monotonic()
        """Monotonic time the loop last ran, for the operator's liveness check."""

    # -- inputs -----------------------------------------------------------------------

    def offer(self, snapshot: Snapshot | None) -> None:
        """A new snapshot (or ``None``: a tick without one). Never raises."""
        self.last_cycle = time.monotonic()
        if self._acting is not None:
            self._next = snapshot or self._next
            return
        now = self.ctx.clock()
        if self.faults.waiting(now) or self.subscriber.thinned(snapshot, self.taskqueue):
            return
        try:
            plan = self._plan(snapshot, now)
        except Exception as exc:
            self._failed(exc, now)
            return
        if plan is not None:
            self.acting_since = time.monotonic()
            self._acting = asyncio.create_task(self._act(plan), name=f"act {self.taskqueue.pool}")

    def tick(self, now: float, interval: float) -> None:
        """The supervisor's beat: without a snapshot for ``interval``, run anyway, so a
        loop waiting for its subscription, its Deployment or a retry gets on."""
        if now - self.last_cycle >= interval:
            self.offer(None)

    async def close(self) -> None:
        if self._acting is not None:
            self._acting.cancel()
        await self.subscriber.close(self.taskqueue.pool)

    # -- observe and decide -----------------------------------------------------------

    def _plan(self, snapshot: Snapshot | None, now: float) -> Plan | None:
        tq, plan = self.taskqueue, Plan()
        if not self.subscriber.current(tq):
            return Plan()  # subscribe first: see _act
        plan.apply = self.rollout.needed(tq, self.deployment, now)
        deployment = self.deployment
        plan.events += self.report.blocked(tq, deployment)
        for event in plan.events:
            logger.warning("%s: %s", tq.pool, event.message)
        if snapshot is None or deployment is None or not deployment.owned_by(tq.uid):
            plan.status = self.report.waiting(tq, deployment, self.faults.current, now)
            return plan if plan.apply or plan.status or plan.events else None
        observation = None if snapshot.error else snapshot.pools.get(tq.pool)
        if observation is None and snapshot.error is None:
            return plan if plan.apply else None  # subscribed after this poll began
        inputs = (observation, deployment, tq)
        if self.faults.current is None and self.memory.unchanged(inputs, now):
            return plan if plan.apply else None
        current = self.memory.current(deployment.replicas, now)
        history = self.memory.before_deciding(current, tq.scaling, now)
        load = observation.load(now) if observation is not None else None
        decision = decide(load, current, tq.scaling, history, now)
        if decision.changes(current):
            plan.decision, plan.current, plan.load = decision, current, load
        else:
            self.memory.held(decision, current, inputs)
        plan.events += self.report.observed(snapshot, observation)
        plan.reported = functools.partial(
            self.report.decided, tq, snapshot, observation, decision, deployment, now=now
        )
        plan.status = plan.reported(self.faults.current)
        if not self.report.settled:
            self.memory.unsettled()
        if plan.apply or plan.decision or plan.status or plan.events:
            self.memory.unsettled()
            return plan
        return None

    # -- act and report ---------------------------------------------------------------

    async def _act(self, plan: Plan) -> None:
        async with self.ctx.writers:
            await self._carry_out(plan)
        if self._next is not None:
            snapshot, self._next = self._next, None
            self.offer(snapshot)

    async def _carry_out(self, plan: Plan) -> None:
        tq, now = self.taskqueue, self.ctx.clock()
        touched = plan.apply or plan.decision is not None or plan.status is not None
        try:
            if not self.subscriber.current(tq):
                await self.subscriber.subscribe(tq, self.ctx.settings, self.ctx.kube.secret)
                touched = True
            if plan.apply:
                await self._apply()
            if plan.decision is not None:
                await self._scale(plan.decision, plan.current, plan.load, now)
            if self.faults.current is not None and plan.reported is not None:
                # Written only if the API server takes it, so written as recovered.
                plan.status = plan.reported(None)
            if plan.status is not None:
                await self.ctx.kube.patch_status(*tq.key, plan.status)
                self.report.written(plan.status, now)
            if touched:  # a fault ends with a write the API server took, not before
                self._recovered(now)
            for event in plan.events:
                self.ctx.post_event(tq, event)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            if self._failed(exc, now):
                await self._show_fault(now)
        finally:
            self._acting = self.acting_since = None

    async def _apply(self) -> None:
        tq = self.taskqueue
        pod_policy.check(tq.worker, tq.namespace, self.ctx.settings.pods)
        await self.ctx.kube.apply_deployment(
            self.rollout.manifest(tq), initial_replicas=tq.scaling.min_replicas
        )
        self.rollout.done(tq, self.ctx.clock())
        logger.info("%s: applied its Deployment (generation %d)", tq.pool, tq.generation)

    async def _scale(self, decision: Decision, current: int, load: Load | None, now: float) -> None:
        tq, target = self.taskqueue, decision.replicas
        poller = self.subscriber.poller
        if target < current and self.ctx.settings.pod_deletion_cost and poller is not None:
            workers = await poller.worker_loads(tq.pool)
            # The floor again, from what the workers say now (without the agent, the
            # decision's figures can be seconds old): never fewer than the busy ones.
            target = max(target, min(current, sum(1 for w in workers.values() if w.busy)))
            await self.ctx.kube.mark_deletion_costs(tq.namespace, selector_labels(tq), workers)
        if target != current:
            decision = replace(decision, replicas=target)
            await self.ctx.kube.set_replicas(tq.namespace, tq.deployment_name, target)
            self.memory.scaled(decision, now)
            self.report.scaled(target > current, now)
            self.ctx.post_event(tq, events.scaled(current, decision, load))

    def _failed(self, exc: BaseException, now: float) -> bool:
        """Record a failure; True when it is news (logged, and an Event posted)."""
        self.report.failed()
        fault = self.faults.failed(exc, now)
        if fault is None:
            return False
        reason, message = fault.reason, fault.message
        internal = reason == INTERNAL_ERROR
        logger.warning(
            "%s: %s (%s); retrying", self.taskqueue.pool, message, reason, exc_info=internal
        )
        if reason != KUBERNETES_UNREACHABLE:  # an Event could not be posted either
            self.ctx.post_event(self.taskqueue, events.Event(events.WARNING, reason, message))
        return True

    async def _show_fault(self, now: float) -> None:
        """Put a new fault on the TaskQueue at once; if even that fails, the next
        successful write will."""
        patch = self.report.waiting(self.taskqueue, self.deployment, self.faults.current, now)
        if patch is None:
            return
        with contextlib.suppress(Exception):
            await self.ctx.kube.patch_status(*self.taskqueue.key, patch)
            self.report.written(patch, now)

    def _recovered(self, now: float) -> None:
        """Clear a fault once this cycle's writes succeeded."""
        ended = self.faults.succeeded()
        if ended is not None:
            pool, took = self.taskqueue.pool, now - ended.since
            logger.info("%s: recovered from %s after %.1fs", pool, ended.reason, took)
