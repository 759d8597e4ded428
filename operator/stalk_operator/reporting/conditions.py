"""Status conditions per the Kubernetes API conventions. Pure.

``lastTransitionTime`` changes only when a condition's status changes, so watchers can
tell how long a TaskQueue has been in its state.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from stalk_operator.faults import DEPLOYMENT_NOT_OWNED, POD_NOT_ALLOWED, SECRET_UNAVAILABLE, Fault
from stalk_operator.scaling import Reason

READY = "Ready"
BROKER_REACHABLE = "BrokerReachable"
SCALING = "Scaling"
BUSY_WORKERS_PROTECTED = "BusyWorkersProtected"

UNOBSERVED_GRACE_SECONDS = 30.0
"""Workers that just started have not reported yet: no verdict before this long."""

_SCALING_INACTIVE = {Reason.PAUSED, Reason.BROKER_UNREACHABLE, Reason.FALLBACK}


@dataclass(frozen=True)
class Condition:
    type: str
    status: str
    reason: str
    message: str


def timestamp(now: float) -> str:
    return datetime.fromtimestamp(now, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_timestamp(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


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


def protection_condition(source: str | None, ready: int, unobserved_for: float) -> Condition:
    """Whether the operator can see which workers are busy, so a scale-down spares them."""
    if source == "Agent":
        return Condition(
            BUSY_WORKERS_PROTECTED,
            "True",
            "AgentReports",
            "Workers publish what they run and hold (the Stalk agent)",
        )
    if source == "RemoteControl":
        return Condition(
            BUSY_WORKERS_PROTECTED,
            "True",
            "RemoteControl",
            "No agent: busy workers are found through Celery's remote control every 5 s",
        )
    if ready == 0 or unobserved_for < UNOBSERVED_GRACE_SECONDS:
        return Condition(BUSY_WORKERS_PROTECTED, "Unknown", "WaitingForWorkers", "No worker yet")
    return Condition(
        BUSY_WORKERS_PROTECTED,
        "False",
        "NotObserved",
        "Busy workers are not protected: the workers publish no load records (no Stalk "
        "agent) and do not answer Celery's remote control, so a scale-down can stop a "
        "worker mid-task. Set spec.worker.agent to Injected or Installed, or enable remote "
        "control (worker_enable_remote_control) in the app.",
    )


def ready_condition(desired: int, ready: int) -> Condition:
    if ready >= desired:
        return Condition(READY, "True", "ReplicasReady", f"{ready}/{desired} replicas ready")
    return Condition(READY, "False", "ReplicasNotReady", f"{ready}/{desired} replicas ready")


def fault_condition(fault: Fault) -> Condition:
    """What stops the loop from acting, on the condition it concerns: the Deployment's
    (and a pod the policy refuses) on Ready, a broker Secret's on BrokerReachable,
    anything else on Scaling."""
    kind = {
        DEPLOYMENT_NOT_OWNED: READY,
        POD_NOT_ALLOWED: READY,
        SECRET_UNAVAILABLE: BROKER_REACHABLE,
    }.get(fault.reason, SCALING)
    return Condition(kind, "False", fault.reason, fault.message)


def with_fault(found: Sequence[Condition], fault: Fault | None) -> list[Condition]:
    """``found``, with the fault's condition in place of the one of its type."""
    if fault is None:
        return list(found)
    shown = fault_condition(fault)
    return [shown if c.type == shown.type else c for c in found]


def blocked_condition(reason: str, message: str) -> Condition:
    """Why the worker Deployment cannot be run, in place of the Ready condition."""
    return Condition(READY, "False", reason, message)


def merge_conditions(
    previous: Iterable[Mapping[str, Any]], current: Sequence[Condition], generation: int, now: float
) -> list[dict[str, Any]]:
    """The new conditions list, keeping transition times of unchanged statuses and the
    conditions ``current`` does not mention."""
    before = {c.get("type"): c for c in previous}
    mentioned = {c.type for c in current}
    merged = [dict(c) for c in previous if c.get("type") not in mentioned]
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
