"""The agent's consumer steps, run on the worker's event-loop timer.

Both tick from the consumer's own event loop, so a worker whose loop is stuck stops
refreshing its load record (the operator ignores it once stale) and stops beating
(``/healthz`` fails): what each signal is meant to reveal.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import redis
from celery import bootsteps
from celery.worker import state as worker_state
from celery.worker.consumer import Consumer
from stalk_broker import WorkerLoad, connect, worker_state_key
from stalk_broker.worker_state import POOL_KEY_TTL_SECONDS

from stalk_agent.health import Heart
from stalk_agent.service_time import ServiceTime
from stalk_agent.settings import AgentSettings

logger = logging.getLogger(__name__)


def current_load(consumer: Consumer, service: ServiceTime | None = None) -> WorkerLoad:
    """What this worker holds now, from Celery's own bookkeeping of requests: running
    tasks, and those received (prefetched) but not yet started; and, given its clock,
    how long its tasks run."""
    active = len(worker_state.active_requests)
    reserved = max(0, len(worker_state.reserved_requests) - active)
    selected = consumer.app.amqp.queues.consume_from
    consuming = selected is None or bool(selected)
    now = time.time()
    runtime = None
    if service is not None:
        service.sample(now, active, worker_state.all_total_count[0])
        measured = service.seconds()
        runtime = None if measured is None else round(measured, 3)
    return WorkerLoad(
        active=active, reserved=reserved, consuming=consuming, updated=now, runtime=runtime
    )


def pod_name(settings: AgentSettings, hostname: str) -> str:
    """The pod's name: from the downward API, else the Celery node name's name part."""
    return settings.pod_name or hostname.partition("@")[0]


class _RepeatingStep(bootsteps.StartStopStep):  # type: ignore[misc]
    """A consumer step that calls :meth:`tick` every ``interval`` seconds."""

    requires = ("celery.worker.consumer.tasks:Tasks",)
    interval: float = 1.0

    def __init__(self, parent: Consumer, **kwargs: Any) -> None:
        super().__init__(parent, **kwargs)
        self._timer_entry: Any = None

    def start(self, parent: Consumer) -> None:
        self.tick(parent)
        self._timer_entry = parent.timer.call_repeatedly(self.interval, self.tick, (parent,))

    def stop(self, parent: Consumer) -> None:
        if self._timer_entry is not None:
            self._timer_entry.cancel()
            self._timer_entry = None

    def tick(self, parent: Consumer) -> None:
        raise NotImplementedError


class LoadReporter(_RepeatingStep):
    """Publishes this worker's :class:`WorkerLoad` to its pool's hash in the broker."""

    label = "Stalk load reporter"

    def __init__(self, parent: Consumer, **kwargs: Any) -> None:
        settings = AgentSettings.from_environ()
        self.interval = settings.load_report_interval_seconds
        self._key = worker_state_key(settings.pool, settings.global_keyprefix)
        self._field = pod_name(settings, parent.hostname)
        self._endpoint = settings.broker()
        self._client: redis.Redis | None = None
        self._failing = False
        self._service = ServiceTime()
        super().__init__(parent, **kwargs)

    def create(self, parent: Consumer) -> None:
        self._client = connect(self._endpoint, socket_timeout=0.5)

    def tick(self, parent: Consumer) -> None:
        record = current_load(parent, self._service).encode()
        self._write(
            lambda pipe: pipe.hset(self._key, self._field, record).expire(
                self._key, POOL_KEY_TTL_SECONDS
            )
        )

    def shutdown(self, parent: Consumer) -> None:
        self._write(lambda pipe: pipe.hdel(self._key, self._field))

    def _write(self, build: Any) -> None:
        if self._client is None:
            return
        try:
            pipe = self._client.pipeline(transaction=False)
            build(pipe)
            pipe.execute()
        except redis.RedisError as exc:
            # The broker being away is the consumer's problem to report; say it once.
            if not self._failing:
                logger.warning("cannot publish load record: %s", exc)
            self._failing = True
        else:
            self._failing = False


class Heartbeat(_RepeatingStep):
    """Beats the agent's :class:`Heart` from the event loop, for ``/healthz``."""

    label = "Stalk heartbeat"

    def tick(self, parent: Consumer) -> None:
        Heart.instance().beat()
