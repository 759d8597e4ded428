"""Status conditions per the Kubernetes API conventions. Pure.

``lastTransitionTime`` changes only when a condition's status changes, so watchers can
tell how long a TaskQueue has been in its state.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from stalk_operator.scaling import Reason

READY = "Ready"
BROKER_REACHABLE = "BrokerReachable"
SCALING = "Scaling"

_SCALING_INACTIVE = {Reason.PAUSED, Reason.BROKER_UNREACHABLE, Reason.FALLBACK}


@dataclass(frozen=True)
class Condition:
    type: str
    status: str
    reason: str
    message: str


def timestamp(now: float) -> str:
    return datetime.fromtimestamp(now, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def broker_condition(error: str | None, broker: str) -> Condition:
    if error is None:
        return Condition(BROKER_REACHABLE, "True", "Polled", f"Read {broker}")
    return Condition(
        BROKER_REACHABLE, "False", "ConnectionFailed", f"Cannot read {broker}: {error}"
    )


def scaling_condition(reason: Reason, desired: int, recommended: int | None) -> Condition:
    status = "False" if reason in _SCALING_INACTIVE else "True"
    detail = f"desired {desired}" + (
        f", load calls for {recommended}" if recommended is not None else ""
    )
    return Condition(SCALING, status, reason.value, detail)


def ready_condition(desired: int, ready: int) -> Condition:
    if ready >= desired:
        return Condition(READY, "True", "ReplicasReady", f"{ready}/{desired} replicas ready")
    return Condition(READY, "False", "ReplicasNotReady", f"{ready}/{desired} replicas ready")


def merge_conditions(
    previous: Iterable[Mapping[str, Any]], current: Iterable[Condition], generation: int, now: float
) -> list[dict[str, Any]]:
    """The new conditions list, keeping transition times of unchanged statuses."""
    before = {c.get("type"): c for c in previous}
    merged = []
    for condition in current:
        old = before.get(condition.type)
        changed = old is None or old.get("status") != condition.status
        merged.append(
            {
                "type": condition.type,
                "status": condition.status,
                "reason": condition.reason,
                "message": condition.message,
                "observedGeneration": generation,
                "lastTransitionTime": timestamp(now) if changed else old["lastTransitionTime"],  # type: ignore[index]
            }
        )
    return merged
