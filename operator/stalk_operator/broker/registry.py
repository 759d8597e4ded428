"""The pollers of every broker in use: created on first use, closed when unused.

TaskQueues on the same broker share one poller (one round trip for all of them); the
same hosts with different credentials are different pollers, since each authenticates
as what its TaskQueues were given.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator

from stalk_broker import BrokerEndpoint

from stalk_operator.broker.observation import Subscription
from stalk_operator.broker.poller import BrokerPoller

PollerKey = tuple[object, ...]


def poller_key(endpoint: BrokerEndpoint) -> PollerKey:
    """The broker's identity plus a digest of its credentials (never the credentials)."""
    secret = f"{endpoint.password}\0{endpoint.sentinel_password}".encode()
    return (*endpoint.identity, hashlib.sha256(secret).hexdigest())


class PollerRegistry:
    def __init__(self, factory: Callable[[BrokerEndpoint], BrokerPoller]) -> None:
        self._factory = factory
        self._pollers: dict[PollerKey, BrokerPoller] = {}
        self._pool_broker: dict[str, PollerKey] = {}

    def __iter__(self) -> Iterator[BrokerPoller]:
        return iter(list(self._pollers.values()))

    async def subscribe(self, endpoint: BrokerEndpoint, subscription: Subscription) -> BrokerPoller:
        """Subscribe a pool to its broker's poller, leaving the poller of a previous broker."""
        key = poller_key(endpoint)
        previous = self._pool_broker.get(subscription.pool)
        if previous is not None and previous != key:
            await self.unsubscribe(subscription.pool)
        poller = self._pollers.get(key)
        if poller is None:
            poller = self._pollers[key] = self._factory(endpoint)
        poller.subscribe(subscription)
        poller.ensure_running()
        self._pool_broker[subscription.pool] = key
        return poller

    async def unsubscribe(self, pool: str) -> None:
        key = self._pool_broker.pop(pool, None)
        poller = self._pollers.get(key) if key is not None else None
        if poller is not None and poller.unsubscribe(pool):
            del self._pollers[key]  # type: ignore[arg-type]
            await poller.close()

    async def close(self) -> None:
        for poller in self:
            await poller.close()
        self._pollers.clear()
        self._pool_broker.clear()
