"""The broker a TaskQueue declares, applied to any Celery app's configuration.

Applied in the worker's main process before the worker connects, so the consumer, and
the pool processes forked from it, use it. Only what decides where messages live is
set: the URL (with the TaskQueue's db), Sentinel's master name and password, TLS,
``global_keyprefix`` and the priority steps (the lists the operator counts), and a
visibility timeout above the TaskQueue's time limit. The app's other settings stay; where
it sets no socket timeout, the broker's sockets get Stalk's
(``stalk_broker.endpoint.CELERY_SOCKET_OPTIONS``), or a publish on a connection to a Redis
pod that went away would wait forever.
"""

from __future__ import annotations

from typing import Any

from celery import Celery
from stalk_broker.endpoint import CELERY_SOCKET_OPTIONS

from stalk_agent.settings import AgentSettings

VISIBILITY_MARGIN_SECONDS = 60


def apply_broker(app: Celery, settings: AgentSettings) -> dict[str, Any]:
    """Point ``app`` at the declared broker; returns the transport options it now has."""
    options = dict(app.conf.broker_transport_options or {})
    options.update(settings.transport_options())
    for name, value in CELERY_SOCKET_OPTIONS.items():
        options.setdefault(name, value)
    floor = settings.task_time_limit_seconds + VISIBILITY_MARGIN_SECONDS
    if int(options.get("visibility_timeout") or 3600) < floor:
        options["visibility_timeout"] = floor
    broker = settings.broker()
    app.conf.broker_url = broker.celery_url()
    app.conf.broker_transport_options = options
    if broker.tls:
        app.conf.broker_use_ssl = broker.celery_ssl()
    return options
