"""What the agent is told, as environment variables the operator sets on worker pods."""

from __future__ import annotations

from dataclasses import dataclass

from stalk_broker.settings import BrokerSettings
from stalk_config import conventions, env


@dataclass(frozen=True)
class AgentSettings(BrokerSettings):
    pool: str = env(
        "STALK_POOL",
        "",
        "The TaskQueue this worker belongs to (`namespace/name`); set by the operator. "
        "When set, the worker publishes its load for the autoscaler.",
    )
    pod_name: str = env(
        "POD_NAME", "", "The pod's name (the downward API): the worker's key in its pool."
    )
    load_report_interval_seconds: float = env(
        "STALK_LOAD_REPORT_INTERVAL_SECONDS",
        1.0,
        "How often the worker publishes its running and prefetched task counts.",
    )
    task_time_limit_seconds: int = env(
        "STALK_TASK_TIME_LIMIT_SECONDS",
        330,
        "The TaskQueue's hard time limit: the visibility timeout is kept above it, so "
        "Redis never hands a running task to a second worker.",
    )
    health_port: int = env(
        "STALK_AGENT_HEALTH_PORT",
        conventions.AGENT_HEALTH_PORT,
        "Port of the agent's `/healthz` (0: no server).",
    )
    health_stale_seconds: float = env(
        "STALK_AGENT_HEALTH_STALE_SECONDS",
        60.0,
        "`/healthz` fails once the worker's event loop (or beat's loop) has not beaten for "
        "this long.",
    )
    task_metrics: bool = env(
        "STALK_AGENT_TASK_METRICS",
        True,
        "Serve each task's queue wait (for producers that stamp their send time) on "
        "`/metrics` beside `/healthz`.",
    )
