"""Every write the operator makes to Kubernetes, in one place.

Two field managers share the worker Deployment: ``stalk-operator`` applies the template
(everything but ``spec.replicas``) and ``stalk-autoscaler`` applies only
``spec.replicas``. Server-side apply keeps each one's fields its own, so a spec change
never resets the replica count.
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Mapping
from typing import Any, cast

from lightkube import AsyncClient
from lightkube.core.exceptions import ApiError
from lightkube.generic_resource import create_namespaced_resource
from lightkube.resources.apps_v1 import Deployment
from lightkube.resources.core_v1 import Pod, Secret
from lightkube.types import PatchType
from stalk_broker import WorkerLoad

from stalk_operator import API_GROUP, API_VERSION, TASKQUEUE_PLURAL
from stalk_operator.broker.credentials import SecretUnavailableError
from stalk_operator.model import SecretKey
from stalk_operator.scaling.victims import DELETION_COST_ANNOTATION, deletion_costs

TEMPLATE_MANAGER = "stalk-operator"
REPLICAS_MANAGER = "stalk-autoscaler"

TaskQueueResource = create_namespaced_resource(
    API_GROUP, API_VERSION, "TaskQueue", TASKQUEUE_PLURAL
)


class DeploymentNotOwnedError(Exception):
    """The worker Deployment's name is taken by an object this TaskQueue does not own."""


class Kubernetes:
    def __init__(self, client: AsyncClient) -> None:
        self.client = client

    async def apply_deployment(self, manifest: Mapping[str, Any], initial_replicas: int) -> None:
        """Create the Deployment with ``initial_replicas``, or apply its template.

        A plain create (not an apply) sets the first replica count, so that later template
        applies, which omit ``spec.replicas``, never own or reset it, and a pool with
        ``minReplicas: 0`` never starts a pod it does not need. A Deployment of that name
        that the manifest's owner does not control is never written.
        """
        name, namespace = manifest["metadata"]["name"], manifest["metadata"]["namespace"]
        try:
            existing = await self.client.get(Deployment, name, namespace=namespace)
            _check_owner(existing, manifest)
        except ApiError as exc:
            if exc.status.code != 404:
                raise
            # A create that loses a race with another writer fails (409), and the next
            # attempt checks the winner's owner like any existing Deployment.
            body = {**manifest, "spec": {**manifest["spec"], "replicas": initial_replicas}}
            await self.client.create(
                cast(Deployment, Deployment.from_dict(body)), field_manager=REPLICAS_MANAGER
            )
            return
        await self.client.patch(
            Deployment,
            name,
            obj=dict(manifest),
            namespace=namespace,
            patch_type=PatchType.APPLY,
            field_manager=TEMPLATE_MANAGER,
            force=True,
        )

    async def set_replicas(self, namespace: str, name: str, replicas: int) -> None:
        await self.client.patch(
            Deployment,
            name,
            namespace=namespace,
            patch_type=PatchType.APPLY,
            field_manager=REPLICAS_MANAGER,
            force=True,
            obj={
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "metadata": {"name": name, "namespace": namespace},
                "spec": {"replicas": replicas},
            },
        )

    async def mark_deletion_costs(
        self, namespace: str, selector: Mapping[str, str], workers: Mapping[str, WorkerLoad]
    ) -> dict[str, int]:
        """Annotate the pool's pods with their deletion cost; returns the costs set."""
        pods = [p async for p in self.client.list(Pod, namespace=namespace, labels=dict(selector))]
        live = {
            p.metadata.name: p
            for p in pods
            if p.metadata and p.metadata.name and not p.metadata.deletionTimestamp
        }
        costs = deletion_costs(live, workers)
        changes = []
        for name, cost in costs.items():
            annotations = live[name].metadata.annotations or {}  # type: ignore[union-attr]
            if annotations.get(DELETION_COST_ANNOTATION) != str(cost):
                changes.append(
                    self.client.patch(
                        Pod,
                        name,
                        namespace=namespace,
                        patch_type=PatchType.MERGE,
                        obj={"metadata": {"annotations": {DELETION_COST_ANNOTATION: str(cost)}}},
                    )
                )
        await asyncio.gather(*changes)
        return costs

    async def patch_status(self, namespace: str, name: str, status: Mapping[str, Any]) -> None:
        await self.client.patch(
            TaskQueueResource.Status,
            name,
            namespace=namespace,
            obj={"status": dict(status)},
            patch_type=PatchType.MERGE,
        )

    async def secret(self, namespace: str, ref: SecretKey | None) -> str | None:
        if ref is None:
            return None
        try:
            secret = await self.client.get(Secret, ref.name, namespace=namespace)
        except ApiError as exc:
            raise SecretUnavailableError(
                f"Secret {namespace}/{ref.name}: {exc.status.reason or exc.status.code}"
            ) from None
        data = secret.data or {}
        if ref.key not in data:
            raise SecretUnavailableError(f"Secret {namespace}/{ref.name} has no key {ref.key!r}")
        return base64.b64decode(data[ref.key]).decode()


def _check_owner(existing: Deployment, manifest: Mapping[str, Any]) -> None:
    (owner,) = manifest["metadata"]["ownerReferences"]
    refs = (existing.metadata.ownerReferences if existing.metadata else None) or []
    controller = next((r for r in refs if r.controller), None)
    if controller is not None and controller.uid == owner["uid"]:
        return
    name = f"Deployment {manifest['metadata']['namespace']}/{manifest['metadata']['name']}"
    if controller is None:
        raise DeploymentNotOwnedError(f"{name} exists and is not Stalk's: delete or rename it")
    raise DeploymentNotOwnedError(
        f"{name} belongs to {controller.kind} {controller.name} (uid {controller.uid})"
    )
