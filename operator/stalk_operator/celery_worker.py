"""The Celery worker a TaskQueue runs, for any team's app: its command line, its
environment, and the Stalk agent. Pure.

What the TaskQueue declares reaches every app, whatever its own configuration says:

* concurrency, pool, prefetch multiplier, time limits and max tasks per child as
  ``celery worker`` options, which win over an app's configuration;
* the broker (with its db) through the agent, which applies it before the worker
  connects; without the agent, as ``CELERY_BROKER_URL``, which also wins over the app's
  ``broker_url`` (but cannot carry Sentinel's master name or a password that needs
  URL quoting: the app's own configuration must then provide them);
* the node name ``<pod>@<namespace>``: how load records and remote-control replies map
  to pods and pools.

The agent (:mod:`stalk_agent`) is ``Injected`` by default: an init container copies it
from Stalk's worker image into an ``emptyDir`` on the worker's ``PYTHONPATH``.
``Installed`` means the image has it (``pip install celery-stalk``); ``Disabled`` runs
without it (no load records, no ``/healthz``; the operator falls back to Celery's remote
control for busy workers).
"""

from __future__ import annotations

from typing import Any

from stalk_config import conventions

from stalk_operator.model import TaskQueue

AGENT_MODULE = "stalk_agent.boot"
AGENT_DIR = "/opt/stalk-agent"
AGENT_VOLUME = "stalk-agent"
AGENT_HEALTH_PORT = conventions.AGENT_HEALTH_PORT
AGENT_PORT_NAME = conventions.AGENT_PORT_NAME
AGENT_METRICS_DIR = "/var/run/stalk-agent-metrics"
"""prometheus-client's multiprocess directory: the pool's children write each task's wait
there and the agent's ``/metrics`` adds the files up (:mod:`stalk_agent.task_metrics`)."""
AGENT_METRICS_VOLUME = "stalk-agent-metrics"
BROKER_CA_DIR = "/etc/stalk/broker-ca"
BROKER_CA_FILE = f"{BROKER_CA_DIR}/ca.crt"
BROKER_CA_VOLUME = "stalk-broker-ca"
INJECTED, INSTALLED, DISABLED = "Injected", "Installed", "Disabled"
SOFT_LIMIT_MARGIN_SECONDS = 30
"""The soft time limit comes this much before the hard one, for the task to clean up."""
HEALTH_MARGIN_SECONDS = 60
_INCLUDE_FLAGS = ("-I", "--include")


def command(taskqueue: TaskQueue) -> list[str]:
    worker = taskqueue.worker
    limit = worker.task_time_limit_seconds
    args = [
        "celery",
        "-A",
        worker.app,
        "worker",
        "--queues",
        ",".join(taskqueue.queues),
        "--concurrency",
        str(worker.concurrency),
        "--pool",
        worker.pool,
        "--prefetch-multiplier",
        str(worker.prefetch_multiplier),
        "--time-limit",
        str(limit),
        "--soft-time-limit",
        str(max(1, limit - SOFT_LIMIT_MARGIN_SECONDS)),
        "--hostname",
        "$(POD_NAME)@$(POD_NAMESPACE)",
        "--without-gossip",
        "--without-mingle",
        "--loglevel",
        "INFO",
    ]
    if worker.max_tasks_per_child is not None:
        args += ["--max-tasks-per-child", str(worker.max_tasks_per_child)]
    extra, includes = _split_includes(worker.extra_args)
    if worker.agent != DISABLED:
        includes.append(AGENT_MODULE)
    if includes:
        args += ["--include", ",".join(includes)]
    return [*args, *extra]


def _split_includes(extra_args: tuple[str, ...]) -> tuple[list[str], list[str]]:
    """The user's extra arguments without ``--include`` (click keeps only the last one),
    and the modules it named, to be merged with the agent's."""
    rest, includes = [], []
    args = iter(extra_args)
    for arg in args:
        if arg in _INCLUDE_FLAGS:
            includes += next(args, "").split(",")
        elif arg.startswith("--include="):
            includes += arg.partition("=")[2].split(",")
        else:
            rest.append(arg)
    return rest, [i for i in includes if i]


def environment(taskqueue: TaskQueue) -> list[dict[str, Any]]:
    broker, worker = taskqueue.broker, taskqueue.worker
    limit = worker.task_time_limit_seconds
    bare = broker.endpoint(None, None)  # the TaskQueue's db, no password
    url = bare.celery_url()
    env: list[dict[str, Any]] = [
        {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        {"name": "POD_NAMESPACE", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
        {"name": "STALK_POOL", "value": taskqueue.pool},
        {"name": "STALK_BROKER_URL", "value": url},
        {
            "name": "STALK_PRIORITY_STEPS",
            "value": ",".join(str(s) for s in broker.layout.priority_steps),
        },
        {"name": "STALK_TASK_TIME_LIMIT_SECONDS", "value": str(limit)},
        # Stalk's own worker app reads these; the command line wins for every app.
        {"name": "STALK_PREFETCH_MULTIPLIER", "value": str(worker.prefetch_multiplier)},
        {
            "name": "STALK_TASK_SOFT_TIME_LIMIT_SECONDS",
            "value": str(max(1, limit - SOFT_LIMIT_MARGIN_SECONDS)),
        },
        {"name": "STALK_VISIBILITY_TIMEOUT_SECONDS", "value": str(max(3600, 2 * limit))},
    ]
    if broker.sentinel and broker.master_name:
        env.append({"name": "STALK_SENTINEL_MASTER", "value": broker.master_name})
    if broker.layout.global_keyprefix:
        env.append({"name": "STALK_GLOBAL_KEYPREFIX", "value": broker.layout.global_keyprefix})
    if bare.tls:
        env.append({"name": "STALK_REDIS_TLS", "value": "true"})
    if broker.ca is not None:
        env.append({"name": "STALK_REDIS_CA_FILE", "value": BROKER_CA_FILE})
    for name, ref in (
        ("STALK_REDIS_PASSWORD", broker.password),
        ("STALK_SENTINEL_PASSWORD", broker.sentinel_password),
    ):
        if ref is not None:
            env.append(
                {"name": name, "valueFrom": {"secretKeyRef": {"name": ref.name, "key": ref.key}}}
            )
    if worker.agent == DISABLED:
        password = "$(STALK_REDIS_PASSWORD)" if broker.password is not None else None
        env.append({"name": "CELERY_BROKER_URL", "value": _with_password(url, password)})
    else:
        env.append({"name": "STALK_AGENT_HEALTH_PORT", "value": str(AGENT_HEALTH_PORT)})
        env.append({"name": "PROMETHEUS_MULTIPROC_DIR", "value": AGENT_METRICS_DIR})
        if worker.pool == "solo":  # a running task holds the event loop the beat comes from
            stale = limit + HEALTH_MARGIN_SECONDS
            env.append({"name": "STALK_AGENT_HEALTH_STALE_SECONDS", "value": str(stale)})
    user = [dict(v) for v in worker.env]
    if worker.agent == INJECTED:
        env.append({"name": "PYTHONPATH", "value": _python_path(user)})
        user = [v for v in user if v.get("name") != "PYTHONPATH"]
    # The user's variables come last: for duplicate names the last one wins.
    return env + user


def _with_password(url: str, password: str | None) -> str:
    """``url`` with a password in every host part (a ``$(VAR)`` the kubelet expands)."""
    if password is None:
        return url
    parts = [p.replace("://", f"://:{password}@", 1) for p in url.split(";")]
    return ";".join(parts)


def _python_path(user_env: list[dict[str, Any]]) -> str:
    """The agent's directory, after the user's own ``PYTHONPATH`` if they set one."""
    own = next((v.get("value") for v in user_env if v.get("name") == "PYTHONPATH"), None)
    return f"{own}:{AGENT_DIR}" if own else AGENT_DIR


def init_containers(taskqueue: TaskQueue, security: dict[str, Any]) -> list[dict[str, Any]]:
    """The container that copies the agent into the pod, when it is injected."""
    worker = taskqueue.worker
    if worker.agent != INJECTED:
        return []
    return [
        {
            "name": "stalk-agent",
            "image": worker.agent_image,
            "imagePullPolicy": worker.image_pull_policy,
            "command": ["python", "-m", "stalk_agent.install", AGENT_DIR],
            "volumeMounts": [{"name": AGENT_VOLUME, "mountPath": AGENT_DIR}],
            "resources": {
                "requests": {"cpu": "10m", "memory": "32Mi"},
                "limits": {"memory": "64Mi"},
            },
            "securityContext": security,
        }
    ]


def mounts(taskqueue: TaskQueue) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The worker container's mounts and the pod's volumes: the agent's metrics files,
    its code when it is injected, and the CAs that sign the broker's certificates."""
    mounts: list[dict[str, Any]] = []
    volumes: list[dict[str, Any]] = []
    ca = taskqueue.broker.ca
    if ca is not None:
        mounts.append({"name": BROKER_CA_VOLUME, "mountPath": BROKER_CA_DIR, "readOnly": True})
        volumes.append(
            {
                "name": BROKER_CA_VOLUME,
                "secret": {"secretName": ca.name, "items": [{"key": ca.key, "path": "ca.crt"}]},
            }
        )
    agent = taskqueue.worker.agent
    if agent == DISABLED:
        return mounts, volumes
    mounts.append({"name": AGENT_METRICS_VOLUME, "mountPath": AGENT_METRICS_DIR})
    volumes.append({"name": AGENT_METRICS_VOLUME, "emptyDir": {}})
    if agent == INJECTED:
        mounts.append({"name": AGENT_VOLUME, "mountPath": AGENT_DIR, "readOnly": True})
        volumes.append({"name": AGENT_VOLUME, "emptyDir": {}})
    return mounts, volumes


def ports(taskqueue: TaskQueue) -> list[dict[str, Any]]:
    """The agent's port, named for the chart's PodMonitor (``/metrics``) and the probe."""
    if taskqueue.worker.agent == DISABLED:
        return []
    return [{"name": AGENT_PORT_NAME, "containerPort": AGENT_HEALTH_PORT, "protocol": "TCP"}]


def liveness_probe(taskqueue: TaskQueue) -> dict[str, Any] | None:
    """The agent's ``/healthz``; none without the agent (the TaskQueue's status says so)."""
    if taskqueue.worker.agent == DISABLED:
        return None
    return {
        "httpGet": {"path": "/healthz", "port": AGENT_PORT_NAME},
        "initialDelaySeconds": 20,
        "periodSeconds": 15,
        "timeoutSeconds": 5,
        "failureThreshold": 4,
    }
