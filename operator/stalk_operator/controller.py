"""One TaskQueue's scaling loop: observe, decide, act, report; kopf-free.

The loop waits for each new snapshot of its broker's poller, decides with the pure
:func:`stalk_operator.scaling.decide`, marks pod deletion costs before any scale-down,
patches replicas, and reports status, Events and metrics. Broker trouble never ends the
loop: it holds (or falls back), says so, and carries on when the broker answers again.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from lightkube.core.exceptions import ApiError

from stalk_operator import conditions
from stalk_operator.actuation import Kubernetes, SecretUnavailableError
from stalk_operator.metrics import Metrics
from stalk_operator.model import TaskQueue
from stalk_operator.polling import BrokerPoller, PollerRegistry, PoolObservation, Subscription
from stalk_operator.scaling import Decision, History, Reason, decide
from stalk_operator.settings import OperatorSettings
from stalk_operator.workload import build_deployment, selector_labels

logger = logging.getLogger(__name__)

PENDING_PATCH_SECONDS = 5.0
"""How long our own replica patch counts as current while the Deployment cache catches up."""
RECREATE_MISSING_AFTER_SECONDS = 5.0


@dataclass(frozen=True)
class DeploymentState:
    replicas: int
    ready: int
    current: int


class EventSink(Protocol):
    def __call__(self, kind: str, reason: str, message: str) -> None: ...


@dataclass
class LoopContext:
    """What the loop needs from outside: all I/O enters here."""

    settings: OperatorSettings
    kube: Kubernetes
    pollers: PollerRegistry
    metrics: Metrics
    taskqueue: Callable[[], TaskQueue]
    """The TaskQueue as it is now (the spec may change while the loop runs)."""
    deployment: Callable[[], DeploymentState | None]
    status: Callable[[], Mapping[str, Any]]
    event: EventSink
    clock: Callable[[], float] = time.time


class ScalingLoop:
    def __init__(self, context: LoopContext) -> None:
        self.ctx = context
        self.history: History | None = None
        self.pending: tuple[int, float] | None = None
        self.broker_ok: bool | None = None
        self.last_status: dict[str, Any] = {}
        self.last_status_at = 0.0
        self.last_snapshot_at = 0.0
        """When the last snapshot this loop decided on was taken (not when it was handled,
        so slow handling never makes the loop skip the next one)."""
        self.last_scale_time: str | None = context.status().get("lastScaleTime")
        self.missing_since: float | None = None
        self._subscribed: tuple[Any, ...] | None = None
        self._poller: BrokerPoller | None = None

    async def run(self) -> None:
        """Loop until cancelled."""
        sequence = 0
        try:
            while True:
                taskqueue = self.ctx.taskqueue()
                try:
                    poller = await self._subscription(taskqueue)
                except SecretUnavailableError as exc:
                    await self._report_unconfigured(taskqueue, str(exc))
                    await asyncio.sleep(5)
                    continue
                interval = taskqueue.scaling.poll_interval_seconds
                snapshot = await poller.wait_after(sequence, timeout=interval + 3)
                if snapshot.sequence == sequence:
                    continue  # nothing new: the poller itself reports a stuck broker
                sequence = snapshot.sequence
                # Thin out snapshots only when the broker is polled faster for another
                # TaskQueue: between two polls at our own pace, round-trip jitter can make
                # the gap a little short, and skipping then would cost a whole interval.
                polled_faster = poller.interval < interval
                if polled_faster and snapshot.taken_at - self.last_snapshot_at < interval * 0.9:
                    continue
                self.last_snapshot_at = snapshot.taken_at
                observation = None if snapshot.error else snapshot.pools.get(taskqueue.pool)
                try:
                    await self.step(taskqueue, observation, snapshot.error, poller.label)
                except ApiError as exc:
                    self.ctx.metrics.reconcile_errors.labels(
                        taskqueue.namespace, taskqueue.name
                    ).inc()
                    logger.warning(
                        "%s: Kubernetes refused a write: %s", taskqueue.pool, exc.status.message
                    )
        finally:
            if self._subscribed is not None:
                await self.ctx.pollers.unsubscribe(self.ctx.taskqueue().pool)

    async def _subscription(self, taskqueue: TaskQueue) -> BrokerPoller:
        broker = taskqueue.broker
        signature = (broker, taskqueue.queues, taskqueue.scaling.poll_interval_seconds)
        if self._poller is not None and signature == self._subscribed:
            return self._poller
        if broker.is_default:
            password = self.ctx.settings.default_redis_password
            sentinel_password = self.ctx.settings.default_sentinel_password
        else:
            password = await self.ctx.kube.secret_value(taskqueue.namespace, broker.password)
            sentinel_password = await self.ctx.kube.secret_value(
                taskqueue.namespace, broker.sentinel_password
            )
        endpoint = broker.endpoint(password, sentinel_password)
        self._poller = await self.ctx.pollers.subscribe(
            endpoint,
            Subscription(
                pool=taskqueue.pool,
                queues=taskqueue.queues,
                layout=broker.layout,
                interval_seconds=taskqueue.scaling.poll_interval_seconds,
            ),
        )
        self._subscribed = signature
        return self._poller

    async def step(
        self,
        taskqueue: TaskQueue,
        observation: PoolObservation | None,
        error: str | None,
        broker: str,
    ) -> Decision | None:
        """One decision from one snapshot; returns it (or None without a Deployment)."""
        now = self.ctx.clock()
        deployment = await self._deployment(taskqueue, now)
        if deployment is None:
            return None
        current = deployment.replicas
        if self.pending is not None:
            replicas, at = self.pending
            if current == replicas or now - at > PENDING_PATCH_SECONDS:
                self.pending = None
            else:
                current = replicas
        if self.history is None:
            self.history = History.after_restart(now, current, _parse_time(self.last_scale_time))
        load = observation.load if observation is not None else None
        decision = decide(load, current, taskqueue.scaling, self.history, now)
        self.history = decision.history
        self._broker_transition(error, broker)
        if decision.changes(current):
            await self._scale(taskqueue, observation, current, decision, now)
        self._record_metrics(taskqueue, observation, decision, deployment)
        await self._report(taskqueue, observation, error, broker, decision, deployment, now)
        return decision

    async def _deployment(self, taskqueue: TaskQueue, now: float) -> DeploymentState | None:
        deployment = self.ctx.deployment()
        if deployment is not None:
            self.missing_since = None
            return deployment
        if self.missing_since is None:
            self.missing_since = now
        elif now - self.missing_since > RECREATE_MISSING_AFTER_SECONDS:
            logger.info("%s: worker Deployment missing; recreating it", taskqueue.pool)
            await self.ctx.kube.apply_deployment(
                build_deployment(taskqueue), initial_replicas=taskqueue.scaling.min_replicas
            )
            self.missing_since = now
        return None

    async def _scale(
        self,
        taskqueue: TaskQueue,
        observation: PoolObservation | None,
        current: int,
        decision: Decision,
        now: float,
    ) -> None:
        target = decision.replicas
        poller = self._poller
        subscription = poller.subscription(taskqueue.pool) if poller is not None else None
        if target < current and self.ctx.settings.pod_deletion_cost and subscription:
            assert poller is not None
            workers = await poller.worker_loads(subscription)
            await self.ctx.kube.mark_deletion_costs(
                taskqueue.namespace, selector_labels(taskqueue), workers
            )
        await self.ctx.kube.set_replicas(taskqueue.namespace, taskqueue.deployment_name, target)
        self.pending = (target, now)
        self.last_scale_time = conditions.timestamp(now)
        direction = "up" if target > current else "down"
        self.ctx.metrics.scale_events.labels(taskqueue.namespace, taskqueue.name, direction).inc()
        load = observation.load if observation is not None else None
        detail = (
            f"backlog {load.backlog}, in-flight {load.in_flight}, busy workers {load.busy_workers}"
            if load is not None
            else "broker unreachable"
        )
        self.ctx.event(
            "Normal",
            "ScaledUp" if direction == "up" else "ScaledDown",
            f"{current} -> {target} replicas ({decision.reason.value}: {detail})",
        )

    def _broker_transition(self, error: str | None, broker: str) -> None:
        ok = error is None
        if self.broker_ok is not None and ok != self.broker_ok:
            if ok:
                self.ctx.event("Normal", "BrokerRecovered", f"Reading {broker} again")
            else:
                self.ctx.event("Warning", "BrokerUnreachable", f"Cannot read {broker}: {error}")
        elif self.broker_ok is None and not ok:
            self.ctx.event("Warning", "BrokerUnreachable", f"Cannot read {broker}: {error}")
        self.broker_ok = ok

    def _record_metrics(
        self,
        taskqueue: TaskQueue,
        observation: PoolObservation | None,
        decision: Decision,
        deployment: DeploymentState,
    ) -> None:
        m, labels = self.ctx.metrics, (taskqueue.namespace, taskqueue.name)
        m.broker_up.labels(*labels).set(1 if observation is not None else 0)
        m.desired_replicas.labels(*labels).set(decision.replicas)
        m.current_replicas.labels(*labels).set(deployment.current)
        if observation is not None:
            load = observation.load
            m.backlog.labels(*labels).set(load.backlog)
            m.in_flight.labels(*labels).set(load.in_flight)
            m.busy_workers.labels(*labels).set(load.busy_workers)

    async def _report(
        self,
        taskqueue: TaskQueue,
        observation: PoolObservation | None,
        error: str | None,
        broker: str,
        decision: Decision,
        deployment: DeploymentState,
        now: float,
    ) -> None:
        status: dict[str, Any] = {
            "desiredReplicas": decision.replicas,
            "currentReplicas": deployment.current,
            "readyReplicas": deployment.ready,
            "broker": broker,
            "deployment": taskqueue.deployment_name,
            "observedGeneration": taskqueue.generation,
        }
        if self.last_scale_time:
            status["lastScaleTime"] = self.last_scale_time
        if observation is not None:
            load = observation.load
            status.update(
                backlog=load.backlog,
                inFlight=load.in_flight,
                busyWorkers=load.busy_workers,
                backlogByQueue={d.queue: d.total for d in observation.depths},
            )
        found = [
            conditions.ready_condition(decision.replicas, deployment.ready),
            conditions.broker_condition(error, broker),
            conditions.scaling_condition(decision.reason, decision.replicas, decision.recommended),
        ]
        await self._write_status(
            taskqueue,
            status,
            found,
            now,
            urgent=decision.reason
            in (Reason.SCALED_UP, Reason.SCALED_DOWN, Reason.OUT_OF_BOUNDS, Reason.FALLBACK),
        )

    async def _report_unconfigured(self, taskqueue: TaskQueue, message: str) -> None:
        now = self.ctx.clock()
        found = [
            conditions.Condition(conditions.BROKER_REACHABLE, "False", "SecretUnavailable", message)
        ]
        await self._write_status(
            taskqueue, {"observedGeneration": taskqueue.generation}, found, now, urgent=False
        )

    async def _write_status(
        self,
        taskqueue: TaskQueue,
        status: dict[str, Any],
        found: list[conditions.Condition],
        now: float,
        urgent: bool,
    ) -> None:
        # Our own last write is the truth (we alone write status); the object's status,
        # which lags it by a watch event, only after a restart.
        previous = self.last_status.get("conditions") or self.ctx.status().get("conditions") or []
        before = {c.get("type"): c.get("status") for c in previous}
        transition = any(before.get(c.type) != c.status for c in found)
        changed = any(self.last_status.get(key) != value for key, value in status.items())
        due = now - self.last_status_at >= self.ctx.settings.status_interval_seconds
        # Scaling and condition changes are written at once; counts at most every interval.
        if not (urgent or transition or (due and changed)):
            return
        status["conditions"] = conditions.merge_conditions(
            previous, found, taskqueue.generation, now
        )
        await self.ctx.kube.patch_status(taskqueue.namespace, taskqueue.name, status)
        self.last_status = status
        self.last_status_at = now


def _parse_time(value: str | None) -> float | None:
    if not value:
        return None
    from datetime import datetime

    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None
