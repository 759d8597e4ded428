"""The scaling decision: observations, history and policy in; replicas and history out.

No I/O and no clock: the caller passes ``now``. Rules, in order:

1. ``paused``: keep the current count.
2. Broker unreadable: ``fallbackReplicas`` if set, else keep the current count.
3. Recommendation: ``ceil((backlog + inFlight) / target)``; 0 while the load does not
   exceed ``activationBacklog``; never fewer than the busy workers; clamped to
   ``[min, max]``.
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
    needed = max(needed, load.busy_workers)
    return min(max(needed, policy.min_replicas), policy.max_replicas)


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
