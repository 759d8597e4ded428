"""The worker pools a run compares: one owned by a TaskQueue, and one per KEDA setup.

Every pool runs the same pods: the KEDA pools' Deployments are built by the operator's
own manifest builder (:func:`stalk_operator.workload.build_deployment`) from a TaskQueue
the API server has defaulted but not stored, so only their names and queues differ.
Each pool consumes a queue of its own name, and the trace is sent to every queue.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

MAX_REPLICAS = 6
CONCURRENCY = 2
STALK = "stalk"


@dataclass(frozen=True)
class KedaSetup:
    """One ScaledObject configuration, named after what it changes from KEDA's defaults."""

    name: str
    description: str
    polling_interval: int | None = None
    cooldown_period: int | None = None
    list_length: int | None = None
    activation_list_length: int | None = None
    hpa_behavior: Mapping[str, Any] = field(default_factory=dict)


FAST_HPA_BEHAVIOR = {
    "scaleUp": {
        "stabilizationWindowSeconds": 0,
        "selectPolicy": "Max",
        "policies": [{"type": "Pods", "value": MAX_REPLICAS, "periodSeconds": 1}],
    },
    "scaleDown": {
        "stabilizationWindowSeconds": 60,
        "selectPolicy": "Max",
        "policies": [{"type": "Percent", "value": 100, "periodSeconds": 15}],
    },
}

KEDA_SETUPS = (
    KedaSetup(
        "keda-default",
        "KEDA's defaults: pollingInterval 30 s, cooldownPeriod 300 s, listLength 5, "
        "the HPA's default behavior",
    ),
    KedaSetup(
        "keda-tuned",
        "pollingInterval 1 s, cooldownPeriod 30 s, HPA scale-up unbounded with no "
        "stabilization, scale-down window 60 s",
        polling_interval=1,
        cooldown_period=30,
        hpa_behavior=FAST_HPA_BEHAVIOR,
    ),
    KedaSetup(
        "keda-matched",
        f"as tuned, and listLength {CONCURRENCY} (the concurrency), activationListLength 0",
        polling_interval=1,
        cooldown_period=30,
        list_length=CONCURRENCY,
        activation_list_length=0,
        hpa_behavior=FAST_HPA_BEHAVIOR,
    ),
)


def taskqueue(name: str) -> dict[str, Any]:
    """The pool as a TaskQueue: from zero, up to :data:`MAX_REPLICAS`, Stalk's defaults."""
    return {
        "apiVersion": "stalk.dev/v1alpha1",
        "kind": "TaskQueue",
        "metadata": {"name": name},
        "spec": {
            "queues": [name],
            "worker": {"concurrency": CONCURRENCY},
            "scaling": {"minReplicas": 0, "maxReplicas": MAX_REPLICAS},
        },
    }


def keda_deployment(defaulted: Mapping[str, Any], settings: Any) -> dict[str, Any]:
    """The Deployment the operator would make for ``defaulted`` (a TaskQueue body as the
    API server defaults it), owned by nobody and at zero replicas, for KEDA to scale."""
    from stalk_operator.model import parse_taskqueue
    from stalk_operator.workload import build_deployment

    deployment = build_deployment(parse_taskqueue(defaulted, settings))
    deployment["metadata"].pop("ownerReferences", None)
    deployment["spec"]["replicas"] = 0
    return deployment


def trigger_authentication(secret: str, key: str) -> dict[str, Any]:
    return {
        "apiVersion": "keda.sh/v1alpha1",
        "kind": "TriggerAuthentication",
        "metadata": {"name": "redis"},
        "spec": {"secretTargetRef": [{"parameter": "password", "name": secret, "key": key}]},
    }


def scaled_object(setup: KedaSetup, address: str, database: int) -> dict[str, Any]:
    """KEDA's ``redis`` trigger on the pool's list, as its documentation writes it."""
    metadata: dict[str, str] = {
        "address": address,
        "listName": setup.name,
        "databaseIndex": str(database),
    }
    if setup.list_length is not None:
        metadata["listLength"] = str(setup.list_length)
    if setup.activation_list_length is not None:
        metadata["activationListLength"] = str(setup.activation_list_length)
    spec: dict[str, Any] = {
        "scaleTargetRef": {"name": setup.name},
        "minReplicaCount": 0,
        "maxReplicaCount": MAX_REPLICAS,
        "triggers": [
            {"type": "redis", "metadata": metadata, "authenticationRef": {"name": "redis"}}
        ],
    }
    if setup.polling_interval is not None:
        spec["pollingInterval"] = setup.polling_interval
    if setup.cooldown_period is not None:
        spec["cooldownPeriod"] = setup.cooldown_period
    if setup.hpa_behavior:
        spec["advanced"] = {"horizontalPodAutoscalerConfig": {"behavior": dict(setup.hpa_behavior)}}
    return {
        "apiVersion": "keda.sh/v1alpha1",
        "kind": "ScaledObject",
        "metadata": {"name": setup.name},
        "spec": spec,
    }
