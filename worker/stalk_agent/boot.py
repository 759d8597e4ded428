"""``celery worker --include stalk_agent.boot``: attach the agent to this worker.

Celery imports ``--include`` modules in the worker's main process while it builds the
worker, just before ``worker_init``; the consumer's blueprint is built after that
signal, so steps added then run. Pool processes import this module again and do nothing
(``worker_init`` is sent once, in the main process).
"""

from __future__ import annotations

import logging
from typing import Any

from celery import signals

from stalk_agent.configure import apply_broker
from stalk_agent.health import serve_once
from stalk_agent.publish import stamp_send_times
from stalk_agent.settings import AgentSettings
from stalk_agent.steps import Heartbeat, LoadReporter
from stalk_agent.task_metrics import enable as enable_task_metrics

logger = logging.getLogger("stalk_agent")


def attach(sender: Any, **_: Any) -> None:
    """``worker_init``: ``sender`` is the worker being built."""
    settings = AgentSettings.from_environ()
    app = sender.app
    apply_broker(app, settings)
    stamp_send_times()  # before the pool forks: its children send the retries
    app.steps["consumer"].add(Heartbeat)
    if settings.pool:
        app.steps["consumer"].add(LoadReporter)
    if settings.health_port:
        metrics = enable_task_metrics() if settings.task_metrics else None
        exposition = None if metrics is None else metrics.exposition
        serve_once(settings.health_port, settings.health_stale_seconds, exposition)
    logger.info(
        "Stalk agent attached: pool %s, broker %s, /healthz and /metrics on :%d",
        settings.pool or "(none)",
        settings.broker().describe(),
        settings.health_port,
    )


signals.worker_init.connect(attach, weak=False, dispatch_uid="stalk-agent-attach")
