"""The shared poller on a real Redis: every pool subscribed is read, whenever it came."""

from __future__ import annotations

import asyncio

import pytest
from prometheus_client import CollectorRegistry
from stalk_broker import BrokerEndpoint, KeyLayout
from stalk_operator.broker import BrokerPoller, Subscription
from stalk_operator.reporting.metrics import Metrics

pytestmark = pytest.mark.integration


def subscription(name: str) -> Subscription:
    return Subscription(f"ns/{name}", (name,), KeyLayout(), interval_seconds=1)


def test_a_pool_subscribed_while_the_poll_set_is_written_is_read_next_cycle(
    redis_db, redis_password
):
    """Three TaskQueues applied together subscribe one after another; the second came
    while the first's poll-set write was in flight, and was never read (a CI run of the
    demo saw two pools stay at backlog 0 with 28 tasks waiting)."""
    client = redis_db.client()
    client.rpush("emails", "m")
    client.rpush("files", "m", "m")
    endpoint = BrokerEndpoint.from_url(redis_db.url, password=redis_password)

    async def scenario() -> dict[str, int]:
        poller = BrokerPoller(
            endpoint, metrics=Metrics(CollectorRegistry()), deliver=lambda snapshot, pools: None
        )
        poller.subscribe(subscription("emails"))
        first = asyncio.create_task(poller.poll_once())
        await asyncio.sleep(0)  # the first cycle is now writing the poll set
        poller.subscribe(subscription("files"))
        await first
        snapshot = await poller.poll_once()
        await poller.close()
        return {pool: observation.backlog for pool, observation in snapshot.pools.items()}

    assert asyncio.run(scenario()) == {"ns/emails": 1, "ns/files": 2}
