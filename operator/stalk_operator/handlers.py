"""kopf glue: each handler hands what kopf saw to the fleet. Nothing else.

* ``configure`` (startup) and ``shut_down`` (cleanup): the fleet and its supervisor,
  and the peering objects if they are missing.
* ``taskqueue_seen`` (every TaskQueue event, the initial listing included): the fleet
  keeps one loop per TaskQueue; the loop applies the Deployment and scales it.
* ``deployment_seen`` (every worker Deployment event): replicas and owner in memory, so
  loops never ask the API server for them.
* ``alive`` (the liveness probe): fails when a poller or a loop has stalled.

No handler makes kopf put a finalizer on a TaskQueue, so deleting one never waits for
the operator: its Deployment goes by garbage collection.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any, cast

import kopf
from lightkube import AsyncClient
from prometheus_client import start_http_server

from stalk_operator import API_GROUP, API_VERSION, TASKQUEUE_PLURAL
from stalk_operator.actuation import Kubernetes
from stalk_operator.fleet import Fleet
from stalk_operator.model import TaskQueue
from stalk_operator.peering import ensure_peerings
from stalk_operator.reporting.events import Event
from stalk_operator.reporting.metrics import Metrics
from stalk_operator.runtime import tune_garbage_collector
from stalk_operator.settings import OperatorSettings
from stalk_operator.workload import MANAGED_BY, DeploymentState

logger = logging.getLogger(__name__)


@kopf.on.startup(errors=kopf.ErrorsMode.PERMANENT)  # exit, and let Kubernetes restart us
async def configure(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    config = OperatorSettings.from_environ()
    settings.posting.level = logging.WARNING
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330  # a silently dropped watch is noticed
    # List in pages: at start-up 10,000 Deployments in one reply would be hundreds of MiB
    # of parsed JSON at once, and the heap never gives that back.
    settings.watching.chunk_size = 200
    # kopf keeps a worker per object for this long after its last event, with the event's
    # body; our handlers take microseconds, so lingering only holds memory (1,000
    # TaskQueues restarting: 152 -> 98 MiB).
    settings.batching.idle_timeout = 0.5
    settings.peering.lifetime = config.peering_lifetime_seconds
    client = AsyncClient(field_manager="stalk-operator")
    if config.create_peering and not config.standalone:
        await ensure_peerings(client, config.peering, config.namespaces)
    start_http_server(config.metrics_port)
    memo.fleet = Fleet(
        config,
        Kubernetes(client),
        Metrics(),
        post_event=_post_event,
    )
    memo.fleet.start()
    tune_garbage_collector()


@kopf.on.cleanup()
async def shut_down(memo: kopf.Memo, **_: Any) -> None:
    await memo.fleet.stop()


@kopf.on.event(API_GROUP, API_VERSION, TASKQUEUE_PLURAL)
async def taskqueue_seen(
    type: str, body: kopf.Body, namespace: str | None, name: str, memo: kopf.Memo, **_: Any
) -> None:
    assert namespace is not None  # TaskQueues are namespaced
    if type == "DELETED" or body.get("metadata", {}).get("deletionTimestamp"):
        await memo.fleet.remove((namespace, name))
    else:
        await memo.fleet.upsert(body)


@kopf.on.event("apps", "v1", "deployments", labels={"app.kubernetes.io/managed-by": MANAGED_BY})
def deployment_seen(
    type: str, body: kopf.Body, namespace: str | None, name: str, memo: kopf.Memo, **_: Any
) -> None:
    assert namespace is not None
    state = None if type == "DELETED" else DeploymentState.from_body(body)
    memo.fleet.deployment_changed((namespace, name), state)


@kopf.on.probe(id="stalled", errors=kopf.ErrorsMode.PERMANENT)
def alive(memo: kopf.Memo, **_: Any) -> str:
    stale = memo.fleet.stale()
    if stale:
        raise kopf.PermanentError("; ".join(stale[:5]))
    return "ok"


def _post_event(taskqueue: TaskQueue, event: Event) -> None:
    kopf.event(
        cast(kopf.Body, _reference(taskqueue)),
        type=event.type,
        reason=event.reason,
        message=event.message,
    )


def _reference(taskqueue: TaskQueue) -> Mapping[str, Any]:
    return {
        "apiVersion": f"{API_GROUP}/{API_VERSION}",
        "kind": "TaskQueue",
        "metadata": {
            "namespace": taskqueue.namespace,
            "name": taskqueue.name,
            "uid": taskqueue.uid,
        },
    }
