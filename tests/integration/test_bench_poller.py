"""Breadth: 1,000 and 10,000 TaskQueues on one broker, read in one round trip.

Prints the cycle time of the shared poller next to one-round-trip-per-TaskQueue (what a
per-object scaler does), and the ratio, which holds on a noisy machine.
"""

from __future__ import annotations

import asyncio
import statistics
import time

import pytest
from prometheus_client import CollectorRegistry
from stalk_broker import BrokerEndpoint, KeyLayout, WorkerLoad, connect_async, worker_state_key
from stalk_broker.depth import queue_depth_commands
from stalk_operator.broker import BrokerPoller, Subscription
from stalk_operator.reporting.metrics import Metrics
from stalk_operator.runtime import tune_garbage_collector

pytestmark = [pytest.mark.integration, pytest.mark.bench]

CYCLES = 40


def percentile(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100)[int(q) - 1]


@pytest.mark.parametrize("pools", [1000, 10000])
def test_one_round_trip_for_many_taskqueues(pools, redis_db, redis_password):
    client = redis_db.client()
    layout = KeyLayout()
    now = time.time()
    pipe = client.pipeline(transaction=False)
    for i in range(pools):
        for step in (0, 3, 6, 9):
            pipe.rpush(layout.priority_list(f"q{i}", step), *(["m"] * (i % 5 + 1)))
        record = WorkerLoad(active=1, reserved=0, consuming=True, updated=now).encode()
        pipe.hset(
            worker_state_key(f"ns/tq{i}"), mapping={f"pod-{i}-a": record, f"pod-{i}-b": record}
        )
    pipe.execute()
    endpoint = BrokerEndpoint.from_url(redis_db.url, password=redis_password)

    async def measure() -> tuple[list[float], list[float], int]:
        poller = BrokerPoller(
            endpoint,
            metrics=Metrics(CollectorRegistry()),
            deliver=lambda snapshot, pools: None,
            stale_after_seconds=3600,
        )
        for i in range(pools):  # not started: each cycle is run and timed here
            poller.subscribe(
                Subscription(pool=f"ns/tq{i}", queues=(f"q{i}",), layout=layout, interval_seconds=1)
            )
        tune_garbage_collector()  # as the operator does at start-up
        started = time.perf_counter()
        await poller.poll_once()  # writes the poll set: once per change of TaskQueues
        first = time.perf_counter() - started
        shared = []
        for _ in range(CYCLES):
            started = time.perf_counter()
            snapshot = await poller.poll_once()
            shared.append(time.perf_counter() - started)
        assert snapshot.error is None
        assert snapshot.pools["ns/tq7"].backlog == 4 * 3
        assert snapshot.pools["ns/tq7"].busy_workers == 2
        assert snapshot.pools["ns/tq7"].in_flight == 2
        separate_client = connect_async(endpoint)
        separate = []
        for _ in range(3):
            started = time.perf_counter()
            for i in range(pools):
                one = separate_client.pipeline(transaction=False)
                queue_depth_commands(one, layout, [f"q{i}"])
                one.hgetall(worker_state_key(f"ns/tq{i}"))
                await one.execute()
            separate.append(time.perf_counter() - started)
        await separate_client.aclose()
        await poller.close()
        return first, shared, separate, len(snapshot.pools)

    first, shared, separate, pools = asyncio.run(measure())
    p50, p95 = percentile(shared, 50) * 1000, percentile(shared, 95) * 1000
    per_object = statistics.median(separate) * 1000
    print(
        f"\nbreadth: {pools} TaskQueues x 4 priority lists + load records, "
        f"one script call per cycle: p50 {p50:.1f} ms, p95 {p95:.1f} ms, "
        f"max {max(shared) * 1000:.1f} ms over {CYCLES} cycles; first cycle, which "
        f"writes the poll set: {first * 1000:.0f} ms; "
        f"one round trip per TaskQueue: {per_object:.0f} ms "
        f"({per_object / p50:.1f}x slower)"
    )
