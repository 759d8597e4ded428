"""The kopf peering objects the operator's replicas meet in, created when missing.

kopf pauses an operator whose peering object is missing (with a name given, peering is
mandatory) and never creates one. The chart renders it; ``kubectl apply -k manifests/``
cannot, since an object cannot be created in the pass that creates its CRD. So the
operator makes sure at start: one ``ClusterKopfPeering`` when it watches the cluster, a
``KopfPeering`` in each watched namespace otherwise. One that exists is left as it is.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from lightkube import AsyncClient
from lightkube.core.exceptions import ApiError
from lightkube.generic_resource import create_global_resource, create_namespaced_resource
from lightkube.models.meta_v1 import ObjectMeta

logger = logging.getLogger(__name__)

ClusterKopfPeering = create_global_resource(
    "kopf.dev", "v1", "ClusterKopfPeering", "clusterkopfpeerings"
)
KopfPeering = create_namespaced_resource("kopf.dev", "v1", "KopfPeering", "kopfpeerings")

CONFLICT = 409


async def ensure_peerings(client: AsyncClient, name: str, namespaces: Sequence[str]) -> int:
    """Create the peering objects named ``name`` that are missing; returns how many."""
    wanted = (
        [
            (KopfPeering(metadata=ObjectMeta(name=name, namespace=ns)), f" in {ns}")
            for ns in namespaces
        ]
        if namespaces
        else [(ClusterKopfPeering(metadata=ObjectMeta(name=name)), "")]
    )
    created = 0
    for peering, where in wanted:
        try:
            await client.create(peering)
        except ApiError as exc:
            if exc.status.code != CONFLICT:
                raise
        else:
            created += 1
            logger.info("created the %s %r%s", peering.kind, name, where)
    return created
