"""The worker Deployment of a TaskQueue, as a manifest. Pure: no I/O.

``spec.replicas`` is deliberately absent: the reconciler applies this manifest with one
field manager and the autoscaler owns ``spec.replicas`` with another, so a spec change
never resets the replica count and the autoscaler never fights the reconciler.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from stalk_config import conventions

from stalk_operator import API_GROUP, API_VERSION, celery_worker
from stalk_operator.model import TaskQueue

WORKER_CONTAINER = "worker"
TASKQUEUE_LABEL = "stalk.dev/taskqueue"
MANAGED_BY = conventions.WORKER_MANAGED_BY
TEMPLATE_HASH_ANNOTATION = "stalk.dev/template-hash"
DEFAULT_RESOURCES = {"requests": {"cpu": "100m", "memory": "256Mi"}, "limits": {"memory": "1Gi"}}


@dataclass(frozen=True)
class DeploymentState:
    """What the operator keeps in memory of a worker Deployment, from its watch."""

    replicas: int
    ready: int
    current: int
    owner: tuple[str, str, str] | None
    """``(kind, name, uid)`` of the controlling owner, if any."""

    template_hash: str | None = None
    """The hash :func:`build_deployment` stamped on the template last applied."""

    @classmethod
    def from_body(cls, body: Mapping[str, Any]) -> DeploymentState:
        spec, status = body.get("spec") or {}, body.get("status") or {}
        refs = (body.get("metadata") or {}).get("ownerReferences") or []
        owner = next(((r["kind"], r["name"], r["uid"]) for r in refs if r.get("controller")), None)
        return cls(
            replicas=int(spec.get("replicas", 1)),
            ready=int(status.get("readyReplicas") or 0),
            current=int(status.get("replicas") or 0),
            owner=owner,
            template_hash=template_hash(body),
        )

    def owned_by(self, uid: str) -> bool:
        return self.owner is not None and self.owner[2] == uid


def selector_labels(taskqueue: TaskQueue) -> dict[str, str]:
    return {TASKQUEUE_LABEL: taskqueue.name}


def common_labels(taskqueue: TaskQueue) -> dict[str, str]:
    return {
        "app.kubernetes.io/name": "stalk-worker",
        "app.kubernetes.io/instance": taskqueue.name,
        "app.kubernetes.io/component": "worker",
        "app.kubernetes.io/managed-by": MANAGED_BY,
        **selector_labels(taskqueue),
    }


def owner_reference(taskqueue: TaskQueue) -> dict[str, Any]:
    return {
        "apiVersion": f"{API_GROUP}/{API_VERSION}",
        "kind": "TaskQueue",
        "name": taskqueue.name,
        "uid": taskqueue.uid,
        "controller": True,
        "blockOwnerDeletion": True,
    }


def build_deployment(taskqueue: TaskQueue) -> dict[str, Any]:
    """The manifest, stamped with a hash of itself: an operator that restarts re-applies
    only the Deployments whose template it would now write differently."""
    manifest = _manifest(taskqueue)
    digest = hashlib.sha256(json.dumps(manifest, sort_keys=True).encode()).hexdigest()[:16]
    manifest["metadata"]["annotations"] = {TEMPLATE_HASH_ANNOTATION: digest}
    return manifest


def template_hash(manifest: Mapping[str, Any]) -> str | None:
    return (manifest["metadata"].get("annotations") or {}).get(TEMPLATE_HASH_ANNOTATION)


def _manifest(taskqueue: TaskQueue) -> dict[str, Any]:
    worker = taskqueue.worker
    labels = common_labels(taskqueue)
    security = {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "runAsNonRoot": True,
        "capabilities": {"drop": ["ALL"]},
    }
    worker_mounts, worker_volumes = celery_worker.mounts(taskqueue)
    container: dict[str, Any] = {
        "name": WORKER_CONTAINER,
        "image": worker.image,
        "imagePullPolicy": worker.image_pull_policy,
        "command": celery_worker.command(taskqueue),
        "env": celery_worker.environment(taskqueue),
        "resources": dict(worker.resources) or DEFAULT_RESOURCES,
        "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}, *worker_mounts],  # noqa: S108
        "securityContext": security,
    }
    ports = celery_worker.ports(taskqueue)
    if ports:
        container["ports"] = ports
    probe = celery_worker.liveness_probe(taskqueue)
    if probe is not None:
        container["livenessProbe"] = probe
    if worker.env_from:
        container["envFrom"] = [dict(s) for s in worker.env_from]
    pod_spec: dict[str, Any] = {
        # No Service env vars: they can collide with STALK_* settings and grow with the
        # namespace. The user's pod template may turn them back on.
        "enableServiceLinks": False,
        # Celery workers do not call the Kubernetes API: no token in the pod unless the
        # TaskQueue names a ServiceAccount (or its pod template asks for one).
        **({} if worker.service_account_name else {"automountServiceAccountToken": False}),
        **dict(worker.pod_template),
        "terminationGracePeriodSeconds": worker.termination_grace_period_seconds,
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": conventions.RUNTIME_UID,
            "runAsGroup": conventions.RUNTIME_UID,
            "fsGroup": conventions.RUNTIME_UID,
            "seccompProfile": {"type": "RuntimeDefault"},
            **dict(worker.pod_template.get("securityContext") or {}),
        },
        "containers": [container, *worker.pod_template.get("containers", [])],
        "volumes": [
            {"name": "tmp", "emptyDir": {}},
            *worker_volumes,
            *worker.pod_template.get("volumes", []),
        ],
    }
    init = [
        *celery_worker.init_containers(taskqueue, security),
        *worker.pod_template.get("initContainers", []),
    ]
    if init:
        pod_spec["initContainers"] = init
    if worker.service_account_name:
        pod_spec["serviceAccountName"] = worker.service_account_name
    if worker.node_selector:
        pod_spec["nodeSelector"] = dict(worker.node_selector)
    if worker.tolerations:
        pod_spec["tolerations"] = [dict(t) for t in worker.tolerations]
    if worker.affinity:
        pod_spec["affinity"] = dict(worker.affinity)
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": taskqueue.deployment_name,
            "namespace": taskqueue.namespace,
            "labels": {**labels},
            "ownerReferences": [owner_reference(taskqueue)],
        },
        "spec": {
            "selector": {"matchLabels": selector_labels(taskqueue)},
            "revisionHistoryLimit": 3,
            "strategy": {
                "type": "RollingUpdate",
                "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": 0},
            },
            "template": {
                "metadata": {
                    "labels": {**dict(worker.pod_labels), **labels},
                    "annotations": dict(worker.pod_annotations),
                },
                "spec": pod_spec,
            },
        },
    }
