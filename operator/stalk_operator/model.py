"""A TaskQueue object as typed values: the one place that knows the CRD's field names.

The API server has applied the CRD's defaults (its schema is their one source) and
refused invalid objects before the operator sees one, so fields with a default are read
as present. What comes in here is the operator's own configuration: the broker and image
of TaskQueues that name none, and values derived from other fields.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from stalk_broker import BrokerEndpoint, KeyLayout

from stalk_operator.settings import OperatorSettings

GRACE_MARGIN_SECONDS = 30
"""Added to the task time limit for the pods' termination grace period."""


@dataclass(frozen=True)
class SecretKey:
    name: str
    key: str


@dataclass(frozen=True)
class BrokerSpec:
    """Where a TaskQueue's queues live. Passwords are references, resolved by the caller."""

    url: str
    master_name: str | None
    db: int | None
    password: SecretKey | None
    sentinel_password: SecretKey | None
    layout: KeyLayout
    is_default: bool
    """Whether this is the operator's default broker (its password comes from settings)."""
    tls: bool = False
    """TLS to Redis and the Sentinels (``rediss://`` turns it on as well)."""
    ca: SecretKey | None = None
    """The PEM CAs to verify the servers against; ``None``: the system's."""

    @property
    def sentinel(self) -> bool:
        return self.url.startswith("sentinel://")

    def endpoint(
        self,
        password: str | None,
        sentinel_password: str | None,
        *,
        ca_file: str | None = None,
        ca_data: str | None = None,
    ) -> BrokerEndpoint:
        return BrokerEndpoint.from_url(
            self.url,
            master_name=self.master_name if self.sentinel else None,
            password=password,
            sentinel_password=sentinel_password,
            db=self.db,
            tls=self.tls,
            ca_file=ca_file,
            ca_data=ca_data,
        )


@dataclass(frozen=True)
class WorkerSpec:
    image: str
    image_pull_policy: str
    app: str
    agent: str
    """``Injected``, ``Installed`` or ``Disabled``: see :mod:`stalk_operator.celery_worker`."""
    agent_image: str
    concurrency: int
    pool: str
    prefetch_multiplier: int
    max_tasks_per_child: int | None
    task_time_limit_seconds: int
    termination_grace_period_seconds: int
    extra_args: tuple[str, ...]
    env: tuple[Mapping[str, Any], ...]
    env_from: tuple[Mapping[str, Any], ...]
    resources: Mapping[str, Any]
    service_account_name: str | None
    node_selector: Mapping[str, str]
    tolerations: tuple[Mapping[str, Any], ...]
    affinity: Mapping[str, Any]
    pod_labels: Mapping[str, str]
    pod_annotations: Mapping[str, str]
    pod_template: Mapping[str, Any]


@dataclass(frozen=True)
class ScalingPolicy:
    """``spec.scaling``; see the CRD for each field's meaning and default."""

    min_replicas: int
    max_replicas: int
    target_per_replica: int
    activation_backlog: int
    poll_interval_seconds: int
    up_window_seconds: int
    up_max_step: int | None
    down_window_seconds: int
    down_max_step: int | None
    down_step_interval_seconds: int
    fallback_replicas: int | None
    paused: bool
    target_wait_seconds: float | None = None
    concurrency: int = 1
    """Tasks one replica runs at once (``spec.worker.concurrency``): what a wait target
    turns into a number of tasks per replica with."""


@dataclass(frozen=True)
class TaskQueue:
    namespace: str
    name: str
    uid: str
    generation: int
    queues: tuple[str, ...]
    broker: BrokerSpec
    worker: WorkerSpec
    scaling: ScalingPolicy

    @property
    def key(self) -> tuple[str, str]:
        return self.namespace, self.name

    @property
    def pool(self) -> str:
        """The worker pool's identity in load records: ``<namespace>/<name>``."""
        return f"{self.namespace}/{self.name}"

    @property
    def deployment_name(self) -> str:
        return self.name


def parse_taskqueue(body: Mapping[str, Any], settings: OperatorSettings) -> TaskQueue:
    meta, spec = body["metadata"], body["spec"]
    worker = _parse_worker(spec["worker"], settings)
    return TaskQueue(
        namespace=meta["namespace"],
        name=meta["name"],
        uid=meta.get("uid", ""),
        generation=int(meta.get("generation", 0)),
        queues=tuple(spec["queues"]),
        broker=_parse_broker(spec["broker"], settings),
        worker=worker,
        scaling=_parse_scaling(spec["scaling"], worker.concurrency),
    )


def _secret_key(ref: Mapping[str, str] | tuple[str, str] | None) -> SecretKey | None:
    if not ref:
        return None
    return SecretKey(*ref) if isinstance(ref, tuple) else SecretKey(ref["name"], ref["key"])


def _parse_broker(spec: Mapping[str, Any], settings: OperatorSettings) -> BrokerSpec:
    url = spec.get("url")
    is_default = url is None
    default_ref = settings.password_secret_ref if is_default else None
    default_sentinel_ref = settings.sentinel_password_secret_ref if is_default else None
    tls = spec.get("tls") or {}
    steps = spec.get("prioritySteps")
    layout = KeyLayout(global_keyprefix=spec.get("globalKeyprefix", ""))
    if steps:
        layout = KeyLayout(layout.global_keyprefix, priority_steps=tuple(sorted(steps)))
    return BrokerSpec(
        url=url or settings.default_broker_url,
        master_name=spec.get("masterName")
        or (settings.default_sentinel_master if is_default else None),
        db=spec.get("db"),
        password=_secret_key(spec.get("passwordSecretRef")) or _secret_key(default_ref),
        sentinel_password=_secret_key(spec.get("sentinelPasswordSecretRef"))
        or _secret_key(default_sentinel_ref),
        layout=layout,
        is_default=is_default,
        tls=bool(tls.get("enabled")) or (is_default and settings.default_redis_tls),
        ca=_secret_key(tls.get("caSecretRef"))
        or _secret_key(settings.ca_secret_ref if is_default else None),
    )


def _parse_worker(spec: Mapping[str, Any], settings: OperatorSettings) -> WorkerSpec:
    time_limit = int(spec["taskTimeLimitSeconds"])
    grace = spec.get("terminationGracePeriodSeconds")
    return WorkerSpec(
        image=spec.get("image") or settings.default_worker_image,
        image_pull_policy=spec.get("imagePullPolicy") or settings.default_image_pull_policy,
        app=spec["app"],
        agent=spec["agent"],
        agent_image=settings.agent_image or settings.default_worker_image,
        concurrency=int(spec["concurrency"]),
        pool=spec["pool"],
        prefetch_multiplier=int(spec["prefetchMultiplier"]),
        max_tasks_per_child=spec.get("maxTasksPerChild"),
        task_time_limit_seconds=time_limit,
        termination_grace_period_seconds=int(
            grace if grace is not None else time_limit + GRACE_MARGIN_SECONDS
        ),
        extra_args=tuple(spec.get("extraArgs") or ()),
        env=tuple(spec.get("env") or ()),
        env_from=tuple(spec.get("envFrom") or ()),
        resources=dict(spec.get("resources") or {}),
        service_account_name=spec.get("serviceAccountName"),
        node_selector=dict(spec.get("nodeSelector") or {}),
        tolerations=tuple(spec.get("tolerations") or ()),
        affinity=dict(spec.get("affinity") or {}),
        pod_labels=dict(spec.get("podLabels") or {}),
        pod_annotations=dict(spec.get("podAnnotations") or {}),
        pod_template=dict(spec.get("podTemplate") or {}),
    )


def _parse_scaling(spec: Mapping[str, Any], concurrency: int) -> ScalingPolicy:
    up, down = spec["scaleUp"], spec["scaleDown"]
    return ScalingPolicy(
        min_replicas=int(spec["minReplicas"]),
        max_replicas=int(spec["maxReplicas"]),
        target_per_replica=int(spec.get("targetTasksPerReplica") or concurrency),
        activation_backlog=int(spec["activationBacklog"]),
        poll_interval_seconds=int(spec["pollIntervalSeconds"]),
        up_window_seconds=int(up["stabilizationWindowSeconds"]),
        up_max_step=up.get("maxStepReplicas"),
        down_window_seconds=int(down["stabilizationWindowSeconds"]),
        down_max_step=down.get("maxStepReplicas"),
        down_step_interval_seconds=int(down["stepIntervalSeconds"]),
        fallback_replicas=spec.get("fallbackReplicas"),
        paused=bool(spec["paused"]),
        target_wait_seconds=(
            None if spec.get("targetWaitSeconds") is None else float(spec["targetWaitSeconds"])
        ),
        concurrency=concurrency,
    )
