"""Worker bootsteps: the load record for the autoscaler, and the liveness heartbeat.

Both run on the consumer's event-loop timer, so a worker whose loop is stuck stops
touching its heartbeat (liveness fails) and stops refreshing its load record (the
operator ignores it once stale), which is what both signals are meant to reveal.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import redis
from celery import bootsteps
from celery.worker import state as worker_state
from celery.worker.consumer import Consumer
from stalk_broker import WorkerLoad, connect, worker_state_key
from stalk_broker.worker_state import POOL_KEY_TTL_SECONDS

from stalk_worker.runtime import settings

logger = logging.getLogger(__name__)


def pod_name(hostname: str) -> str:
    """The host part of a Celery node name (``celery@<pod>``): the pod's name."""
    return hostname.rpartition("@")[2]


def current_load(consumer: Consumer) -> WorkerLoad:
    """What this worker holds now, from Celery's own bookkeeping of requests."""
    active = len(worker_state.active_requests)
    reserved = max(0, len(worker_state.reserved_requests) - active)
    selected = consumer.app.amqp.queues.consume_from
    consuming = selected is None or bool(selected)
    return WorkerLoad(active=active, reserved=reserved, consuming=consuming, updated=time.time())


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
        config = settings()
        self.interval = config.load_report_interval_seconds
        self._key = worker_state_key(config.pool_name, config.global_keyprefix)
        self._field = pod_name(parent.hostname)
        self._client: redis.Redis | None = None
        self._failing = False
        super().__init__(parent, **kwargs)

    def create(self, parent: Consumer) -> None:
        self._client = connect(settings().broker(), socket_timeout=0.5)

    def tick(self, parent: Consumer) -> None:
        record = current_load(parent).encode()
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


class HeartbeatFile(_RepeatingStep):
    """Touches the heartbeat file that ``stalk-worker-alive`` checks."""

    label = "Stalk heartbeat file"

    def __init__(self, parent: Consumer, **kwargs: Any) -> None:
        self.interval = settings().heartbeat_interval_seconds
        self._path = Path(settings().heartbeat_file)
        super().__init__(parent, **kwargs)

    def tick(self, parent: Consumer) -> None:
        try:
            self._path.parent.mkdir(parents=True, exist_ok=True)
            self._path.touch()
        except OSError as exc:
            logger.warning("cannot touch heartbeat file %s: %s", self._path, exc)

    def shutdown(self, parent: Consumer) -> None:
        self._path.unlink(missing_ok=True)
