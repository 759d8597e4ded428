"""A TaskQueue object as typed values, with the operator's defaults filled in.

The API server has already applied the CRD's defaults and refused invalid objects; this
parse is where the operator's own defaults (broker, image) come in, and the one place
that knows the field names of the CRD.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from stalk_broker import DEFAULT_PRIORITY_STEPS, BrokerEndpoint, KeyLayout

from stalk_operator.settings import OperatorSettings

GRACE_MARGIN_SECONDS = 30


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

    def endpoint(self, password: str | None, sentinel_password: str | None) -> BrokerEndpoint:
        return BrokerEndpoint.from_url(
            self.url,
            master_name=self.master_name if self.url.startswith("sentinel://") else None,
            password=password,
            sentinel_password=sentinel_password,
            db=self.db,
        )


@dataclass(frozen=True)
class WorkerSpec:
    image: str
    image_pull_policy: str
    app: str
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
    min_replicas: int = 1
    max_replicas: int = 10
    target_per_replica: int = 2
    activation_backlog: int = 0
    poll_interval_seconds: int = 1
    up_window_seconds: int = 0
    up_max_step: int | None = None
    down_window_seconds: int = 60
    down_max_step: int | None = None
    down_step_interval_seconds: int = 15
    fallback_replicas: int | None = None
    paused: bool = False


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
    labels: Mapping[str, str] = field(default_factory=dict)

    @property
    def pool(self) -> str:
        """The worker pool's identity in load records: ``<namespace>/<name>``."""
        return f"{self.namespace}/{self.name}"

    @property
    def deployment_name(self) -> str:
        return self.name


def parse_taskqueue(body: Mapping[str, Any], settings: OperatorSettings) -> TaskQueue:
    meta = body["metadata"]
    spec = body.get("spec") or {}
    worker = _parse_worker(spec.get("worker") or {}, settings)
    return TaskQueue(
        namespace=meta["namespace"],
        name=meta["name"],
        uid=meta.get("uid", ""),
        generation=int(meta.get("generation", 0)),
        queues=tuple(spec["queues"]),
        broker=_parse_broker(spec.get("broker") or {}, settings),
        worker=worker,
        scaling=_parse_scaling(spec.get("scaling") or {}, worker.concurrency),
        labels=dict(meta.get("labels") or {}),
    )


def _secret_key(ref: Mapping[str, str] | None) -> SecretKey | None:
    return SecretKey(ref["name"], ref["key"]) if ref else None


def _parse_broker(spec: Mapping[str, Any], settings: OperatorSettings) -> BrokerSpec:
    url = spec.get("url")
    is_default = url is None
    default_ref = settings.password_secret_ref
    default_sentinel_ref = settings.sentinel_password_secret_ref
    layout = KeyLayout(
        global_keyprefix=spec.get("globalKeyprefix", ""),
        priority_steps=tuple(sorted(spec.get("prioritySteps") or DEFAULT_PRIORITY_STEPS)),
    )
    return BrokerSpec(
        url=url or settings.default_broker_url,
        master_name=spec.get("masterName")
        or (settings.default_sentinel_master if is_default else None),
        db=spec.get("db"),
        password=_secret_key(spec.get("passwordSecretRef"))
        or (SecretKey(*default_ref) if is_default and default_ref else None),
        sentinel_password=_secret_key(spec.get("sentinelPasswordSecretRef"))
        or (SecretKey(*default_sentinel_ref) if is_default and default_sentinel_ref else None),
        layout=layout,
        is_default=is_default,
    )


def _parse_worker(spec: Mapping[str, Any], settings: OperatorSettings) -> WorkerSpec:
    time_limit = int(spec.get("taskTimeLimitSeconds", 330))
    grace = spec.get("terminationGracePeriodSeconds")
    return WorkerSpec(
        image=spec.get("image") or settings.default_worker_image,
        image_pull_policy=spec.get("imagePullPolicy") or settings.default_image_pull_policy,
        app=spec.get("app", "stalk_worker.app"),
        concurrency=int(spec.get("concurrency", 2)),
        pool=spec.get("pool", "prefork"),
        prefetch_multiplier=int(spec.get("prefetchMultiplier", 1)),
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
    up = spec.get("scaleUp") or {}
    down = spec.get("scaleDown") or {}
    return ScalingPolicy(
        min_replicas=int(spec.get("minReplicas", 1)),
        max_replicas=int(spec.get("maxReplicas", 10)),
        target_per_replica=int(spec.get("targetTasksPerReplica") or concurrency),
        activation_backlog=int(spec.get("activationBacklog", 0)),
        poll_interval_seconds=int(spec.get("pollIntervalSeconds", 1)),
        up_window_seconds=int(up.get("stabilizationWindowSeconds", 0)),
        up_max_step=up.get("maxStepReplicas"),
        down_window_seconds=int(down.get("stabilizationWindowSeconds", 60)),
        down_max_step=down.get("maxStepReplicas"),
        down_step_interval_seconds=int(down.get("stepIntervalSeconds", 15)),
        fallback_replicas=spec.get("fallbackReplicas"),
        paused=bool(spec.get("paused", False)),
    )
