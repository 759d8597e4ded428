"""The scaling decision: observations, history and policy in; replicas and history out.

No I/O and no clock: the caller passes ``now``. Rules, in order:

1. ``paused``: keep the current count.
2. Broker unreadable: ``fallbackReplicas`` if set, else keep the current count.
3. Recommendation: ``ceil((backlog + inFlight) / target)``; 0 while the load does not
   exceed ``activationBacklog``; never fewer than the busy workers; clamped to
   ``[min, max]``. With ``targetWaitSeconds`` it is the larger of that and the wait
   recommendation (:func:`recommend_for_wait`).
4. Up: the lowest recommendation of the scale-up window (0 s by default: at once), at
   most ``maxStepReplicas`` more.
5. Down: the highest recommendation of the scale-down window, at most
   ``maxStepReplicas`` fewer, no sooner than ``stepIntervalSeconds`` after the last step.

Like the HPA's behaviour API, but with in-flight work and busy workers in the
recommendation, which is what keeps a pool of busy workers from being scaled away.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass, field, replace

from stalk_operator.model import ScalingPolicy


class Reason(enum.StrEnum):
    """Why replicas are what they are; shown in the Scaling condition and Events."""

    SCALED_UP = "ScaledUp"
    SCALED_DOWN = "ScaledDown"
    STEADY = "Steady"
    STABILIZING = "Stabilizing"
    STEP_INTERVAL = "WaitingForStepInterval"
    BUSY_WORKERS = "HeldByBusyWorkers"
    PAUSED = "Paused"
    BROKER_UNREACHABLE = "BrokerUnreachable"
    FALLBACK = "Fallback"
    OUT_OF_BOUNDS = "OutOfBounds"


@dataclass(frozen=True)
class Load:
    """What one poll saw for one pool."""

    backlog: int
    """Messages waiting in every priority list of the pool's queues."""

    in_flight: int
    """Tasks the pool's workers hold: running or reserved."""

    busy_workers: int
    """Workers holding at least one task: removing one would interrupt work."""

    oldest_wait: float = 0.0
    """Seconds the oldest waiting task has waited (0 when none waits)."""

    task_seconds: float | None = None
    """Mean seconds a task runs, as the workers measured it; ``None`` when unknown."""

    @property
    def total(self) -> int:
        return self.backlog + self.in_flight


@dataclass(frozen=True)
class History:
    """What the decision remembers between polls."""

    recommendations: tuple[tuple[float, int], ...] = ()
    """``(time, recommended replicas)``, oldest first, as long as the longest window. A run
    of equal recommendations is kept as its last one: the windows only ask for the lowest
    and highest recommendation since a time, which the last of a run answers."""

    last_scale_down: float | None = None
    """When replicas were last lowered, for ``stepIntervalSeconds``."""

    @classmethod
    def after_restart(cls, now: float, current: int, last_scale_time: float | None) -> History:
        """History for an operator that just started: pretend the current count was
        recommended now, so nothing scales down before a full window has passed."""
        return cls(recommendations=((now, current),), last_scale_down=last_scale_time)

    def record(self, now: float, recommended: int, keep_seconds: float) -> History:
        kept = [(t, r) for t, r in self.recommendations if now - t <= keep_seconds]
        if kept and kept[-1][1] == recommended:
            kept.pop()
        return replace(self, recommendations=(*kept, (now, recommended)))

    def within(self, now: float, seconds: float) -> list[int]:
        return [r for t, r in self.recommendations if now - t <= seconds]


@dataclass(frozen=True)
class Decision:
    replicas: int
    reason: Reason
    recommended: int | None
    history: History = field(repr=False)

    def changes(self, current: int) -> bool:
        return self.replicas != current


def recommend(load: Load, policy: ScalingPolicy) -> int:
    """Replicas the current load calls for, before stabilization."""
    if load.total <= policy.activation_backlog:
        needed = 0
    else:
        needed = max(1, math.ceil(load.total / policy.target_per_replica))
        needed = max(needed, recommend_for_wait(load, policy))
    needed = max(needed, load.busy_workers)
    return min(max(needed, policy.min_replicas), policy.max_replicas)


def recommend_for_wait(load: Load, policy: ScalingPolicy) -> int:
    """Replicas that start every waiting task within ``targetWaitSeconds``; 0 without a
    target. Two parts, the larger taken:

    a. From the task run time S the workers measure: within the target T, a replica
       starts the ``c`` tasks it holds and ``c * T / S`` more as its slots free (``c``
       its concurrency), so the load is spread at ``c * (1 + T / S)`` tasks a replica.
       Unknown S (no task finished yet): this part is left out.
    b. From the oldest task's measured wait w, when it already exceeds T: the busy
       workers scaled by ``w / T``, as the HPA scales on a metric above its target. It
       corrects (a) when S misleads, and needs no S. Busy workers, not replicas: pods
       still starting have served no task yet, and counting them would compound the
       same late wait into more replicas at every poll.
    """
    target = policy.target_wait_seconds
    if target is None or load.backlog == 0:
        return 0
    needed = 0
    if load.task_seconds:
        per_replica = policy.concurrency * (1 + target / load.task_seconds)
        needed = math.ceil(load.total / per_replica)
    if load.oldest_wait > target:
        needed = max(needed, math.ceil(load.busy_workers * load.oldest_wait / target))
    return needed


def decide(
    load: Load | None,
    current: int,
    policy: ScalingPolicy,
    history: History,
    now: float,
) -> Decision:
    """The replicas to run now. ``load`` is ``None`` when the broker could not be read."""
    if policy.paused:
        return Decision(current, Reason.PAUSED, None, history)
    if load is None:
        if policy.fallback_replicas is not None:
            return Decision(policy.fallback_replicas, Reason.FALLBACK, None, history)
        return Decision(current, Reason.BROKER_UNREACHABLE, None, history)

    recommended = recommend(load, policy)
    keep = max(policy.up_window_seconds, policy.down_window_seconds)
    history = history.record(now, recommended, keep)

    if current < policy.min_replicas or current > policy.max_replicas:
        bounded = min(max(current, policy.min_replicas), policy.max_replicas)
        bounded = max(bounded, min(load.busy_workers, policy.max_replicas))
        return Decision(
            bounded,
            Reason.OUT_OF_BOUNDS,
            recommended,
            _mark_down(history, now) if bounded < current else history,
        )

    if recommended > current:
        target = min(history.within(now, policy.up_window_seconds))
        if policy.up_max_step is not None:
            target = min(target, current + policy.up_max_step)
        if target > current:
            return Decision(target, Reason.SCALED_UP, recommended, history)
        return Decision(current, Reason.STABILIZING, recommended, history)

    if recommended < current:
        target = max(history.within(now, policy.down_window_seconds))
        if target >= current:
            reason = Reason.BUSY_WORKERS if load.busy_workers >= current else Reason.STABILIZING
            return Decision(current, reason, recommended, history)
        last = history.last_scale_down
        if last is not None and now - last < policy.down_step_interval_seconds:
            return Decision(current, Reason.STEP_INTERVAL, recommended, history)
        if policy.down_max_step is not None:
            target = max(target, current - policy.down_max_step)
        return Decision(target, Reason.SCALED_DOWN, recommended, _mark_down(history, now))

    by_load_alone = recommend(replace(load, busy_workers=0), policy)
    reason = Reason.BUSY_WORKERS if by_load_alone < current else Reason.STEADY
    return Decision(current, reason, recommended, history)


def _mark_down(history: History, now: float) -> History:
    return replace(history, last_scale_down=now)
