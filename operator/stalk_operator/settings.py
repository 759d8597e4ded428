"""The operator's own configuration, from environment variables with defaults.

Run ``python -m stalk_operator.settings`` for the reference table. Broker defaults here
are what a TaskQueue without ``spec.broker`` uses: in the chart, its own Redis.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field

from stalk_config import Secret, SettingsError, env, from_env, markdown_table

from stalk_operator.pod_policy import PodPolicy, PodPolicyError

LOG_LEVELS = ("debug", "info", "warning", "error")


@dataclass(frozen=True)
class OperatorSettings:
    namespaces: tuple[str, ...] = env(
        "STALK_NAMESPACES", (), "Namespaces to watch (comma-separated); empty means all."
    )
    default_broker_url: str = env(
        "STALK_DEFAULT_BROKER_URL",
        "redis://localhost:6379/0",
        "Broker of TaskQueues that name none: `redis://...` or `sentinel://...;sentinel://...`.",
    )
    default_sentinel_master: str = env(
        "STALK_DEFAULT_SENTINEL_MASTER", "mymaster", "Sentinel master name of the default broker."
    )
    default_redis_password: Secret | None = env(
        "STALK_DEFAULT_REDIS_PASSWORD", None, "Password the operator uses for the default broker."
    )
    default_sentinel_password: Secret | None = env(
        "STALK_DEFAULT_SENTINEL_PASSWORD",
        None,
        "Password of the default broker's Sentinels, if they have one.",
    )
    default_password_secret: str = env(
        "STALK_DEFAULT_PASSWORD_SECRET",
        "",
        "`name:key` of the Secret, in each TaskQueue's namespace, that worker pods read the "
        "default broker's password from; empty for a broker without auth.",
    )
    default_sentinel_password_secret: str = env(
        "STALK_DEFAULT_SENTINEL_PASSWORD_SECRET",
        "",
        "`name:key` of the Secret, in each TaskQueue's namespace, that worker pods read the "
        "default broker's Sentinel password from; empty for Sentinels without auth.",
    )
    default_redis_tls: bool = env(
        "STALK_DEFAULT_REDIS_TLS",
        False,
        "TLS to the default broker's Redis and Sentinels (`rediss://` implies it).",
    )
    default_redis_ca_file: str | None = env(
        "STALK_DEFAULT_REDIS_CA_FILE",
        None,
        "PEM CAs the operator verifies the default broker against; unset: the system's.",
    )
    default_ca_secret: str = env(
        "STALK_DEFAULT_CA_SECRET",
        "",
        "`name:key` of the Secret, in each TaskQueue's namespace, that worker pods read the "
        "default broker's CAs from; empty: the image's system CAs.",
    )
    default_worker_image: str = env(
        "STALK_DEFAULT_WORKER_IMAGE",
        "ghcr.io/stalk-dev/stalk-worker:0.1.0",
        "Worker image of TaskQueues that name none.",
    )
    agent_image: str = env(
        "STALK_AGENT_IMAGE",
        "",
        "Image the Stalk agent is copied from into worker pods (`agent: Injected`); empty "
        "means the default worker image.",
    )
    default_image_pull_policy: str = env(
        "STALK_DEFAULT_IMAGE_PULL_POLICY", "IfNotPresent", "Pull policy of the default image."
    )
    status_interval_seconds: float = env(
        "STALK_STATUS_INTERVAL_SECONDS",
        5.0,
        "Least time between two status writes of one TaskQueue when only counts changed; "
        "scaling and condition changes are written at once.",
    )
    broker_timeout_seconds: float = env(
        "STALK_BROKER_TIMEOUT_SECONDS", 2.0, "Socket timeout of one broker round trip."
    )
    stale_worker_seconds: float = env(
        "STALK_STALE_WORKER_SECONDS",
        10.0,
        "A worker load record older than this is ignored (its worker is gone).",
    )
    api_concurrency: int = env(
        "STALK_API_CONCURRENCY",
        32,
        "Most TaskQueues writing to the API server at once; the rest wait their turn "
        "(1,000 TaskQueues starting together do not open 1,000 requests).",
    )
    liveness_stale_seconds: float = env(
        "STALK_LIVENESS_STALE_SECONDS",
        60.0,
        "`/healthz` fails when a broker poller has not finished a cycle, or a TaskQueue's "
        "write has not returned, for this long: Kubernetes then restarts a wedged operator.",
    )
    metrics_port: int = env("STALK_METRICS_PORT", 8080, "Port of the Prometheus `/metrics`.")
    health_port: int = env("STALK_HEALTH_PORT", 8081, "Port of kopf's liveness `/healthz`.")
    peering: str = env(
        "STALK_PEERING",
        "stalk",
        "kopf peering name: of several operator replicas only one acts. The "
        "`ClusterKopfPeering` (or, watching namespaces, a `KopfPeering` in each) of that "
        "name must exist; see `STALK_CREATE_PEERING`.",
    )
    create_peering: bool = env(
        "STALK_CREATE_PEERING",
        True,
        "Create the peering objects at start when missing, for `kubectl apply -k` (which "
        "cannot create them in the pass that creates their CRD). The chart renders them "
        "itself and turns this off: both creating them would race `helm install`.",
    )
    priority: int | None = env(
        "STALK_PRIORITY",
        None,
        "kopf peering priority; unset picks a random one per process, since operators "
        "with equal priorities all pause.",
    )
    peering_lifetime_seconds: int = env(
        "STALK_PEERING_LIFETIME_SECONDS",
        20,
        "How long a silent peer counts as alive: a standby takes over this long after the "
        "active operator dies.",
    )
    standalone: bool = env(
        "STALK_STANDALONE", False, "Run without peering (only when one replica can ever run)."
    )

    pod_deletion_cost: bool = env(
        "STALK_POD_DELETION_COST",
        True,
        "Mark pods with `controller.kubernetes.io/pod-deletion-cost` before a scale-down so "
        "idle workers go first. Turn off only to measure what it saves.",
    )
    pod_policy: str = env(
        "STALK_POD_POLICY",
        "",
        "What TaskQueue authors may add to worker pods beyond the restricted default, per "
        'namespace, as JSON: `{"batch": {"allow": ["ExtraContainers"], "serviceAccounts": '
        '["batch-worker"]}}` (the chart\'s `taskQueuePolicy.namespaces`; see '
        '"TaskQueue safety" in docs/architecture.md).',
    )
    log_level: str = env(
        "STALK_LOG_LEVEL",
        "info",
        "`debug` (kopf's own handling and every API request too), `info`, `warning` or `error`.",
    )

    pods: PodPolicy = field(init=False, repr=False, compare=False)
    """``pod_policy``, parsed."""

    def __post_init__(self) -> None:
        try:
            object.__setattr__(self, "pods", PodPolicy.from_json(self.pod_policy))
        except PodPolicyError as exc:
            raise SettingsError(f"STALK_POD_POLICY: {exc}") from None
        if self.log_level not in LOG_LEVELS:
            raise SettingsError(f"STALK_LOG_LEVEL must be one of {', '.join(LOG_LEVELS)}")
        for name, value in (
            ("STALK_DEFAULT_PASSWORD_SECRET", self.default_password_secret),
            ("STALK_DEFAULT_SENTINEL_PASSWORD_SECRET", self.default_sentinel_password_secret),
            ("STALK_DEFAULT_CA_SECRET", self.default_ca_secret),
        ):
            if value and ":" not in value:
                raise SettingsError(f"{name} must be name:key")

    @classmethod
    def from_environ(cls, environ: Mapping[str, str] | None = None) -> OperatorSettings:
        return from_env(cls, os.environ if environ is None else environ)

    @property
    def password_secret_ref(self) -> tuple[str, str] | None:
        return _secret_ref(self.default_password_secret)

    @property
    def sentinel_password_secret_ref(self) -> tuple[str, str] | None:
        return _secret_ref(self.default_sentinel_password_secret)

    @property
    def ca_secret_ref(self) -> tuple[str, str] | None:
        return _secret_ref(self.default_ca_secret)


def _secret_ref(name_key: str) -> tuple[str, str] | None:
    if not name_key:
        return None
    name, key = name_key.split(":", 1)
    return name, key


if __name__ == "__main__":
    print(markdown_table(OperatorSettings))
