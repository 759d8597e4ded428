"""The Kubernetes Events a TaskQueue gets: one per scale, and one per change of state
(broker lost or back, a fault begun or ended). Pure: the loop posts them."""

from __future__ import annotations

from dataclasses import dataclass

from stalk_operator.scaling import Decision, Load

NORMAL, WARNING = "Normal", "Warning"


@dataclass(frozen=True)
class Event:
    type: str
    reason: str
    message: str


def scaled(current: int, decision: Decision, load: Load | None) -> Event:
    detail = (
        f"backlog {load.backlog}, in-flight {load.in_flight}, busy workers {load.busy_workers}"
        if load is not None
        else "broker unreachable"
    )
    reason = "ScaledUp" if decision.replicas > current else "ScaledDown"
    message = f"{current} -> {decision.replicas} replicas ({decision.reason.value}: {detail})"
    return Event(NORMAL, reason, message)


def broker_changed(was_ok: bool | None, error: str | None, broker: str) -> Event | None:
    """An Event when the broker is lost or back; none while nothing changes."""
    if error is None:
        recovered = was_ok is False
        return Event(NORMAL, "BrokerRecovered", f"Reading {broker} again") if recovered else None
    if was_ok is False:
        return None
    return Event(WARNING, "BrokerUnreachable", f"Cannot read {broker}: {error}")


def fault_changed(before: str | None, after: str | None, reason: str) -> Event | None:
    """An Event when a fault begins or changes; ``reason`` names what failed."""
    if after is None or after == before:
        return None
    return Event(WARNING, reason, after)
