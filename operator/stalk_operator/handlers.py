"""kopf glue: each handler fetches, calls the domain code, and writes. Nothing else.

* ``configure`` (startup): settings, the Kubernetes client, pollers, metrics.
* ``reconcile`` (TaskQueue create/update/resume): apply the worker Deployment.
* ``autoscale`` (a daemon per TaskQueue): run its :class:`ScalingLoop`.
* ``worker_deployments`` (an index): replicas of every worker Deployment, so the loops
  read them from memory instead of asking the API server every second.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping
from typing import Any

import kopf
from lightkube import AsyncClient
from prometheus_client import start_http_server

from stalk_operator import API_GROUP, API_VERSION, TASKQUEUE_PLURAL
from stalk_operator.actuation import Kubernetes
from stalk_operator.controller import DeploymentState, LoopContext, ScalingLoop
from stalk_operator.metrics import Metrics
from stalk_operator.model import parse_taskqueue
from stalk_operator.polling import BrokerPoller, PollerRegistry
from stalk_operator.runtime import tune_garbage_collector
from stalk_operator.settings import OperatorSettings
from stalk_operator.workload import MANAGED_BY, build_deployment

ANNOTATION_PREFIX = "stalk.dev"


@kopf.on.startup()
async def configure(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    config = OperatorSettings.from_environ()
    # Keep kopf's bookkeeping in annotations: our status schema has no room for it.
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(
        prefix=ANNOTATION_PREFIX
    )
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=ANNOTATION_PREFIX, key="last-handled-configuration"
    )
    settings.posting.level = logging.WARNING
    settings.watching.server_timeout = 300
    settings.networking.error_backoffs = [1, 2, 5, 10]
    settings.peering.lifetime = config.peering_lifetime_seconds
    metrics = Metrics()
    start_http_server(config.metrics_port)
    memo.config = config
    memo.metrics = metrics
    memo.kube = Kubernetes(AsyncClient(field_manager="stalk-operator"))
    tune_garbage_collector()
    memo.pollers = PollerRegistry(
        lambda endpoint: BrokerPoller(
            endpoint,
            metrics=metrics,
            timeout_seconds=config.broker_timeout_seconds,
            stale_after_seconds=config.stale_worker_seconds,
        )
    )


@kopf.index("apps", "v1", "deployments", labels={"app.kubernetes.io/managed-by": MANAGED_BY})
def worker_deployments(
    namespace: str | None, name: str, spec: kopf.Spec, status: kopf.Status, **_: Any
) -> dict[tuple[str | None, str], DeploymentState]:
    return {
        (namespace, name): DeploymentState(
            replicas=int(spec.get("replicas", 1)),
            ready=int(status.get("readyReplicas", 0) or 0),
            current=int(status.get("replicas", 0) or 0),
        )
    }


@kopf.on.resume(API_GROUP, API_VERSION, TASKQUEUE_PLURAL)
@kopf.on.create(API_GROUP, API_VERSION, TASKQUEUE_PLURAL)
@kopf.on.update(API_GROUP, API_VERSION, TASKQUEUE_PLURAL, field="spec")
async def reconcile(body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    taskqueue = parse_taskqueue(body, memo.config)
    await memo.kube.apply_deployment(
        build_deployment(taskqueue), initial_replicas=taskqueue.scaling.min_replicas
    )


@kopf.daemon(API_GROUP, API_VERSION, TASKQUEUE_PLURAL, cancellation_timeout=10.0)
async def autoscale(
    body: kopf.Body,
    memo: kopf.Memo,
    stopped: kopf.DaemonStopped,
    **kwargs: Any,
) -> None:
    namespace, name = body["metadata"]["namespace"], body["metadata"]["name"]
    # kopf passes indices by name; DaemonFn's type cannot name this one.
    index: kopf.Index[tuple[str, str], DeploymentState] = kwargs["worker_deployments"]

    def deployment() -> DeploymentState | None:
        for state in index.get((namespace, name), []):
            return state
        return None

    def event(kind: str, reason: str, message: str) -> None:
        kopf.event(body, type=kind, reason=reason, message=message)

    def status() -> Mapping[str, Any]:
        return body.get("status") or {}

    loop = ScalingLoop(
        LoopContext(
            settings=memo.config,
            kube=memo.kube,
            pollers=memo.pollers,
            metrics=memo.metrics,
            taskqueue=lambda: parse_taskqueue(body, memo.config),
            deployment=deployment,
            status=status,
            event=event,
        )
    )
    # Run until kopf says stop, then cancel at once rather than wait out a poll.
    running = asyncio.create_task(loop.run(), name=f"autoscale {namespace}/{name}")
    await stopped.wait()
    running.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await running


@kopf.on.delete(API_GROUP, API_VERSION, TASKQUEUE_PLURAL, optional=True)
async def forget(body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    """The Deployment goes by garbage collection; only the metric series are ours to drop."""
    memo.metrics.forget(body["metadata"]["namespace"], body["metadata"]["name"])
