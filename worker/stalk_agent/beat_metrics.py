"""What beat shows Prometheus: that it ticks, and whether it holds the schedule's lock.

A beat that stops ticking fires nothing and logs nothing; its liveness probe restarts it,
and these let an alert say when that is not enough (a beat that keeps hanging, or none
that holds the lock). Beat is one process, so plain gauges in a registry of the agent's
own, served beside ``/healthz``.
"""

from __future__ import annotations

import time
from typing import ClassVar

from stalk_agent import prometheus


class BeatMetrics:
    """One per process, as the ``/healthz`` server it is served by (Celery may build a
    scheduler more than once)."""

    _instance: ClassVar[BeatMetrics | None] = None

    @classmethod
    def instance(cls) -> BeatMetrics:
        if cls._instance is None:
            cls._instance = cls()
        return cls._instance

    def __init__(self) -> None:
        client = prometheus.load()
        self.registry = client.CollectorRegistry()
        self.last_tick = client.Gauge(
            "stalk_beat_last_tick_timestamp_seconds",
            "When beat's loop last went through the schedule (Unix time).",
            registry=self.registry,
        )
        self.lock_held = client.Gauge(
            "stalk_beat_lock_held",
            "1 while this beat holds the celery-redbeat lock (it alone fires the schedule).",
            registry=self.registry,
        )
        self._client = client

    def ticked(self, now: float | None = None) -> None:
        self.last_tick.set(time.time() if now is None else now)
        self.lock_held.set(1)

    def lost_lock(self) -> None:
        self.lock_held.set(0)

    def exposition(self) -> tuple[bytes, str]:
        return self._client.generate_latest(self.registry), self._client.CONTENT_TYPE_LATEST
