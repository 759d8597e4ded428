"""One TaskQueue's place on its broker's poller.

Subscribed with the broker, queues and poll interval of its spec, again whenever those
change; a TaskQueue on a broker polled faster than it asks (for another TaskQueue there)
skips the snapshots in between.
"""

from __future__ import annotations

from typing import Any

from stalk_operator.broker.credentials import SecretReader, resolve_endpoint
from stalk_operator.broker.observation import Snapshot, Subscription
from stalk_operator.broker.poller import BrokerPoller
from stalk_operator.broker.registry import PollerRegistry
from stalk_operator.model import TaskQueue
from stalk_operator.settings import OperatorSettings


def _signature(taskqueue: TaskQueue) -> tuple[Any, ...]:
    return taskqueue.broker, taskqueue.queues, taskqueue.scaling.poll_interval_seconds


class PoolSubscriber:
    def __init__(self, pollers: PollerRegistry) -> None:
        self._pollers = pollers
        self.poller: BrokerPoller | None = None
        self._subscribed: tuple[Any, ...] | None = None
        self._last_taken_at = 0.0

    def current(self, taskqueue: TaskQueue) -> bool:
        """Whether the subscription is the one this spec asks for."""
        return self._subscribed == _signature(taskqueue)

    async def subscribe(
        self, taskqueue: TaskQueue, settings: OperatorSettings, read_secret: SecretReader
    ) -> None:
        tq = taskqueue
        endpoint = await resolve_endpoint(tq.broker, tq.namespace, settings, read_secret)
        subscription = Subscription(
            tq.pool, tq.queues, tq.broker.layout, tq.scaling.poll_interval_seconds
        )
        self.poller = await self._pollers.subscribe(endpoint, subscription)
        self._subscribed = _signature(tq)

    def thinned(self, snapshot: Snapshot | None, taskqueue: TaskQueue) -> bool:
        """Whether to skip a snapshot polled sooner than this TaskQueue asks."""
        if snapshot is None or self.poller is None:
            return False
        interval = taskqueue.scaling.poll_interval_seconds
        polled_faster = self.poller.interval < interval
        if polled_faster and snapshot.taken_at - self._last_taken_at < interval * 0.9:
            return True
        self._last_taken_at = snapshot.taken_at
        return False

    async def close(self, pool: str) -> None:
        await self._pollers.unsubscribe(pool)
