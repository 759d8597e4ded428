"""Which pods a scale-down should remove: the idle ones. Pure.

The ReplicaSet controller removes pods with the lowest
``controller.kubernetes.io/pod-deletion-cost`` first (after unscheduled, pending and
unready ones). Setting it from each worker's load before lowering replicas makes
Kubernetes pick idle workers, so running tasks are not interrupted.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from stalk_broker import WorkerLoad

DELETION_COST_ANNOTATION = "controller.kubernetes.io/pod-deletion-cost"
COST_PER_TASK = 100
DRAINING_COST = -100
"""A worker that stopped consuming goes before any other."""
MAX_COST = 2**31 - 1


def deletion_cost(load: WorkerLoad | None) -> int:
    """Busy workers cost their in-flight tasks; idle ones nothing; draining ones less."""
    if load is None:
        return 0
    if not load.consuming and not load.busy:
        return DRAINING_COST
    return min(MAX_COST, COST_PER_TASK * load.in_flight)


def deletion_costs(pods: Iterable[str], workers: Mapping[str, WorkerLoad]) -> dict[str, int]:
    return {pod: deletion_cost(workers.get(pod)) for pod in pods}
