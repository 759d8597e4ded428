"""What one TaskQueue's decisions remember between polls. Pure: the caller passes ``now``.

* The recommendation history the stabilization windows read (:class:`History`).
* Our own replica patch, which counts as current while the Deployment cache catches up.
* Steady cycles: when nothing a decision reads has changed since a cycle that held
  replicas where the load put them, deciding again would hold them again, so the loop
  skips it. 10,000 idle TaskQueues then cost a few identity checks each per poll (the
  poller keeps an unchanged observation as the same object, the watches replace only
  what changed). The history is told afterwards that the recommendation held until the
  last skipped poll, so the windows still count from then.
"""

from __future__ import annotations

from collections.abc import Sequence

from stalk_operator.model import ScalingPolicy
from stalk_operator.scaling.decision import Decision, History

PENDING_PATCH_SECONDS = 5.0
"""How long our own replica patch counts as current while the Deployment cache catches up."""


class DecisionMemory:
    def __init__(self, last_scale_time: float | None) -> None:
        self.history: History | None = None
        self.pending: tuple[int, float] | None = None
        self._last_scale_time = last_scale_time
        self._steady: tuple[Sequence[object], int] | None = None
        """The inputs of the last steady cycle and the replicas it held."""
        self._steady_until: float | None = None

    def current(self, replicas: int, now: float) -> int:
        """The Deployment's replicas, or our own patch while the cache catches up."""
        if self.pending is not None:
            patched, at = self.pending
            if replicas == patched or now - at > PENDING_PATCH_SECONDS:
                self.pending = None
            else:
                return patched
        return replicas

    def unchanged(self, inputs: Sequence[object], now: float) -> bool:
        """True (and remembered) when ``inputs`` are the very objects of the last steady
        cycle and no patch of ours is pending: the decision can be skipped."""
        steady = self._steady
        if steady is None or self.pending is not None or len(steady[0]) != len(inputs):
            return False
        if all(a is b for a, b in zip(steady[0], inputs, strict=True)):
            self._steady_until = now
            return True
        return False

    def before_deciding(self, current: int, policy: ScalingPolicy, now: float) -> History:
        """The history to decide with, caught up on skipped steady cycles."""
        if self.history is None:
            self.history = History.after_restart(now, current, self._last_scale_time)
        if self._steady is not None and self._steady_until is not None:
            keep = max(policy.up_window_seconds, policy.down_window_seconds)
            self.history = self.history.record(self._steady_until, self._steady[1], keep)
        self._steady = self._steady_until = None
        return self.history

    def held(self, decision: Decision, current: int, inputs: Sequence[object]) -> None:
        """A decision that kept ``current``; steady if the load asked for exactly that."""
        self.history = decision.history
        if decision.recommended == current:
            self._steady = (inputs, current)

    def scaled(self, decision: Decision, now: float) -> None:
        """A decision that changed replicas, once the patch was accepted."""
        self.history = decision.history
        self.pending = (decision.replicas, now)
        self._last_scale_time = now

    def unsettled(self) -> None:
        """Something besides the decision needs doing this cycle: no skip next time."""
        self._steady = None
