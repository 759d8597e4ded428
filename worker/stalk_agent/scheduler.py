"""``celery -A <any app> beat -S stalk_agent.scheduler.Scheduler``: any app's beat with
the broker its Stalk release declares, the schedule from the chart's values besides the
app's own, and a celery-redbeat lock so that a second beat never fires an entry twice.

Everything is applied when Celery builds the scheduler, before beat connects. A beat that
starts before its Redis (a fresh install: the StatefulSet is still electing its master)
waits for it, rather than exiting into CrashLoopBackOff and its growing back-off. Each
pass of beat's loop beats the agent's :class:`~stalk_agent.health.Heart`, so ``/healthz``
(the liveness probe) fails for a beat that no longer ticks: a hung beat fires nothing and
shows nothing otherwise; ``/metrics`` beside it gives the last tick's time and whether
this beat holds the lock, for an alert. Needs celery-redbeat: in the image, or injected
with the agent (``install --beat``).
"""

from __future__ import annotations

import logging
import time
from typing import Any

import redis
from celery import Celery
from redbeat import RedBeatScheduler
from stalk_broker.endpoint import BrokerEndpoint, connect

from stalk_agent.beat import BeatSettings
from stalk_agent.beat_metrics import BeatMetrics
from stalk_agent.configure import apply_broker
from stalk_agent.health import Heart, serve_once
from stalk_agent.settings import AgentSettings

logger = logging.getLogger(__name__)
BROKER_RETRY_MAX_SECONDS = 10.0
BROKER_RETRY_SECONDS = 1.0
"""How soon beat's loop tries again after the broker failed a tick."""


class Scheduler(RedBeatScheduler):  # type: ignore[misc]
    def __init__(self, app: Celery, *args: Any, **kwargs: Any) -> None:
        settings = AgentSettings.from_environ()
        self.metrics = BeatMetrics.instance()
        if settings.health_port:
            serve_once(settings.health_port, settings.health_stale_seconds, self.metrics.exposition)
        wait_for_broker(configure(app))
        super().__init__(app, *args, **kwargs)

    def tick(self, *args: Any, **kwargs: Any) -> float:
        try:
            interval = float(super().tick(*args, **kwargs))
        except redis.exceptions.LockNotOwnedError:
            # The lock expired while beat could not renew it: a failover took longer than
            # the lock lasts. Nobody holding it now, beat takes it again and goes on;
            # another beat holding it, this one stops (its restart waits as a standby),
            # so that no entry fires twice.
            if not self.lock.acquire(blocking=False):
                self.metrics.lost_lock()
                raise
            logger.warning("beat: the lock expired (the broker was away); took it again")
            interval = float(super().tick(*args, **kwargs))
        except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError) as exc:
            # The broker is failing over ("The previous master is now a slave") or away:
            # try again shortly, through the Sentinels. The heart does not beat meanwhile,
            # so a broker away for longer than the stale limit still shows on /healthz.
            logger.warning("beat: the broker is away (%s); trying again", exc)
            return BROKER_RETRY_SECONDS
        Heart.instance().beat()
        self.metrics.ticked()
        return interval


def wait_for_broker(endpoint: BrokerEndpoint) -> None:
    delay = 1.0
    while True:
        try:
            with connect(endpoint) as client:
                client.ping()
            return
        except redis.RedisError as exc:
            logger.warning(
                "beat: the broker does not answer yet (%s); trying again in %.0fs",
                type(exc).__name__,
                delay,
            )
            time.sleep(delay)
            delay = min(delay * 2, BROKER_RETRY_MAX_SECONDS)


def configure(app: Celery) -> BrokerEndpoint:
    """Apply the release's broker and schedule to ``app``; returns the broker."""
    settings = AgentSettings.from_environ()
    apply_broker(app, settings)
    beat = BeatSettings.from_environ().beat_config()
    schedule = {**(app.conf.beat_schedule or {}), **beat.pop("beat_schedule")}
    app.conf.update(beat, beat_schedule=schedule)
    return settings.broker()
