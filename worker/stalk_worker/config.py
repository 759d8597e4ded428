"""Celery configuration from :class:`WorkerSettings`: the reliability defaults live here.

Why each default:

* ``task_acks_late`` + ``task_reject_on_worker_lost``: a task is acknowledged after it
  ran, so a worker that dies mid-task gives it back instead of losing it.
* ``worker_cancel_long_running_tasks_on_connection_loss=False``: a task running when
  the broker restarts (a failover, an upgrade) runs to the end and its result is stored.
  Cancelling it instead leaves its message unacknowledged until the visibility timeout,
  an hour: measured in the fault suite, a Redis restart under load then left every
  running task undone for that hour. Either way a task may run twice (the message is
  redelivered after the timeout), which acks_late asks of every task anyway.
* ``worker_prefetch_multiplier=1``: a worker holds no more than it can run, so waiting work
  stays in the lists where the autoscaler (and other workers) can see it.
* One visibility timeout for broker and result backend, longer than the hard time limit,
  so Redis never redelivers a task that is still running.
* Broker and result-backend sockets time out and keep alive
  (``stalk_broker.endpoint.CELERY_SOCKET_OPTIONS``): a Redis pod's address can vanish
  without closing the connection, and a client must not wait on it for long (the result
  backend's pub/sub connection held ``send_task`` for Celery's default 120 s).
* JSON only: no pickle from a shared broker.
"""

from __future__ import annotations

from typing import Any

from stalk_broker.endpoint import CELERY_SOCKET_OPTIONS

from stalk_worker.routing import DEFAULT_QUEUE, route_task
from stalk_worker.settings import WorkerSettings

BUILTIN_TASK_MODULES: tuple[str, ...] = (
    "stalk_worker.tasks.email",
    "stalk_worker.tasks.webhooks",
    "stalk_worker.tasks.files",
    "stalk_worker.tasks.analysis",
    "stalk_worker.tasks.reports",
    "stalk_worker.tasks.maintenance",
    "stalk_worker.tasks.canvas",
)


def celery_config(settings: WorkerSettings) -> dict[str, Any]:
    broker = settings.broker()
    backend = settings.result_backend()
    transport_options: dict[str, Any] = {
        "visibility_timeout": settings.visibility_timeout_seconds,
        "priority_steps": list(settings.priority_steps),
        "queue_order_strategy": "priority",
        **CELERY_SOCKET_OPTIONS,
        **broker.celery_transport_options(),
    }
    backend_options: dict[str, Any] = {
        "visibility_timeout": settings.visibility_timeout_seconds,
        **backend.celery_transport_options(),
    }
    if settings.global_keyprefix:
        transport_options["global_keyprefix"] = settings.global_keyprefix
        backend_options["global_keyprefix"] = settings.global_keyprefix
    tls: dict[str, Any] = {}
    if broker.tls:
        tls["broker_use_ssl"] = broker.celery_ssl()
    if backend.tls:
        tls["redis_backend_use_ssl"] = backend.celery_ssl()
    return {
        **tls,
        "broker_url": broker.celery_url(),
        "result_backend": backend.celery_url(),
        "broker_transport_options": transport_options,
        "result_backend_transport_options": backend_options,
        "broker_connection_retry_on_startup": True,
        "redis_socket_timeout": CELERY_SOCKET_OPTIONS["socket_timeout"],
        "redis_socket_connect_timeout": CELERY_SOCKET_OPTIONS["socket_connect_timeout"],
        "redis_socket_keepalive": CELERY_SOCKET_OPTIONS["socket_keepalive"],
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "worker_prefetch_multiplier": settings.prefetch_multiplier,
        "worker_cancel_long_running_tasks_on_connection_loss": False,
        "worker_soft_shutdown_timeout": settings.soft_shutdown_timeout_seconds,
        "task_soft_time_limit": settings.task_soft_time_limit_seconds,
        "task_time_limit": settings.task_time_limit_seconds,
        "task_serializer": "json",
        "result_serializer": "json",
        "accept_content": ["json"],
        "result_accept_content": ["json"],
        "result_expires": settings.result_expires_seconds,
        "result_extended": True,
        "task_track_started": True,
        "task_default_queue": DEFAULT_QUEUE,
        "task_routes": (route_task,),
        "task_create_missing_queues": True,
        "worker_send_task_events": settings.task_events,
        "task_send_sent_event": settings.task_events,
        "enable_utc": True,
        "timezone": "UTC",
        **settings.beat_config(),
    }
