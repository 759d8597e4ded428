"""The operator on the test cluster: re-exports of stalk_devenv.stack, and TaskQueue bodies."""

from __future__ import annotations

from stalk_devenv.stack import CRDS, RBAC, WORKER_LABELS, OperatorProcess, grant_operator

__all__ = ["CRDS", "RBAC", "WORKER_LABELS", "OperatorProcess", "grant_operator", "taskqueue"]


def taskqueue(name: str, queues: list[str], **spec: object) -> dict:
    return {
        "apiVersion": "stalk.dev/v1alpha1",
        "kind": "TaskQueue",
        "metadata": {"name": name},
        "spec": {"queues": queues, **spec},
    }
