"""One poller per broker: every TaskQueue on it read in a single round trip.

Each cycle reads, for every subscribed pool, the length of each priority list of each of
its queues and the in-flight work of its workers, in one read-only script call
(:mod:`stalk_broker.pool_reader`): 1,000 TaskQueues cost one round trip and one small
reply. Per-pod loads are read only when a scale-down needs them.

The result is a :class:`Snapshot` the per-TaskQueue loops wait for; a failed round trip
is a snapshot with an error, so every loop on the broker learns of it at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import redis
import redis.asyncio
from stalk_broker import BrokerEndpoint, KeyLayout, WorkerLoad, connect_async, worker_state_key
from stalk_broker.depth import QueueDepth, fold_queue_depths
from stalk_broker.pool_reader import (
    POLL_SET_TTL_SECONDS,
    READ_POOLS_SCRIPT,
    PoolQuery,
    poll_set,
    script_arguments,
    split_reply,
)

from stalk_operator.metrics import Metrics
from stalk_operator.scaling import Load

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Subscription:
    """What to read for one pool."""

    pool: str
    """``<namespace>/<name>`` of the TaskQueue."""

    queues: tuple[str, ...]
    layout: KeyLayout
    interval_seconds: float

    @property
    def query(self) -> PoolQuery:
        return PoolQuery(self.pool, self.queues, self.layout)


@dataclass(frozen=True)
class PoolObservation:
    depths: tuple[QueueDepth, ...]
    in_flight: int
    busy_workers: int

    @property
    def backlog(self) -> int:
        return sum(d.total for d in self.depths)

    @property
    def load(self) -> Load:
        return Load(backlog=self.backlog, in_flight=self.in_flight, busy_workers=self.busy_workers)


@dataclass(frozen=True)
class Snapshot:
    sequence: int
    taken_at: float
    """Wall-clock time the round trip completed."""

    pools: Mapping[str, PoolObservation] = field(default_factory=dict)
    error: str | None = None
    """Why the broker could not be read (no secrets); ``None`` when it was."""


class BrokerPoller:
    """Polls one broker for all its subscribers, at the shortest interval any asks for."""

    def __init__(
        self,
        endpoint: BrokerEndpoint,
        *,
        metrics: Metrics,
        timeout_seconds: float = 2.0,
        stale_after_seconds: float = 10.0,
        client_factory: Callable[..., redis.asyncio.Redis] = connect_async,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.endpoint = endpoint
        self.label = endpoint.describe()
        self._metrics = metrics
        self._stale_after = stale_after_seconds
        self._clock = clock
        self._client = client_factory(endpoint, socket_timeout=timeout_seconds)
        self._read_pools = self._client.register_script(READ_POOLS_SCRIPT)
        poller_id = uuid.uuid4().hex
        self._poll_set_keys = [
            f"stalk:pollset:{poller_id}:keys",
            f"stalk:pollset:{poller_id}:counts",
        ]
        self._poll_set_for: list[PoolQuery] | None = None
        self._subscriptions: dict[str, Subscription] = {}
        self._latest = Snapshot(sequence=0, taken_at=0.0)
        self._changed = asyncio.Condition()
        self._task: asyncio.Task[None] | None = None

    @property
    def latest(self) -> Snapshot:
        return self._latest

    @property
    def interval(self) -> float:
        return min((s.interval_seconds for s in self._subscriptions.values()), default=1.0)

    def subscribe(self, subscription: Subscription) -> None:
        self._subscriptions[subscription.pool] = subscription
        if self._task is None:
            self._task = asyncio.create_task(self.run(), name=f"poller {self.label}")

    async def unsubscribe(self, pool: str) -> bool:
        """Drop a pool; returns True when none is left and the poller has stopped."""
        self._subscriptions.pop(pool, None)
        if self._subscriptions or self._task is None:
            return False
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        self._task = None
        await self._client.aclose()
        return True

    async def run(self) -> None:
        """Poll until cancelled. Nothing may end this loop: every TaskQueue on the broker
        waits for its snapshots, so an unexpected failure becomes an error snapshot."""
        while True:
            started = time.monotonic()
            try:
                snapshot = await self.poll_once()
            except Exception as exc:
                logger.exception("poll of %s failed unexpectedly", self.label)
                snapshot = Snapshot(self._latest.sequence + 1, self._clock(), error=_describe(exc))
            async with self._changed:
                self._latest = snapshot
                self._changed.notify_all()
            elapsed = time.monotonic() - started
            await asyncio.sleep(max(0.0, self.interval - elapsed))

    async def wait_after(self, sequence: int, timeout: float) -> Snapshot:
        """The first snapshot newer than ``sequence`` (or the latest, after ``timeout``)."""
        async with self._changed:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(
                    self._changed.wait_for(lambda: self._latest.sequence > sequence), timeout
                )
            return self._latest

    async def poll_once(self) -> Snapshot:
        subscriptions = list(self._subscriptions.values())
        sequence = self._latest.sequence + 1
        started = time.perf_counter()
        try:
            readings = await self._round_trip(subscriptions)
        except (redis.RedisError, OSError, TimeoutError) as exc:
            self._metrics.broker_errors.labels(broker=self.label).inc()
            logger.warning("cannot read broker %s: %s", self.label, type(exc).__name__)
            return Snapshot(sequence, self._clock(), error=_describe(exc))
        finally:
            self._metrics.poll_duration.labels(broker=self.label).observe(
                time.perf_counter() - started
            )
        pools = {}
        for subscription, reading in zip(subscriptions, readings, strict=True):
            depths = tuple(
                fold_queue_depths(subscription.layout, subscription.queues, reading.lengths)
            )
            pools[subscription.pool] = PoolObservation(
                depths, reading.in_flight, reading.busy_workers
            )
            self._metrics.record_depths(subscription.pool, depths)
        return Snapshot(sequence, self._clock(), pools=pools)

    async def _round_trip(self, subscriptions: list[Subscription]) -> list[Any]:
        if not subscriptions:
            return []
        queries = [s.query for s in subscriptions]
        if self._poll_set_for != queries:
            await self._write_poll_set(queries)
        args = script_arguments(self._clock(), self._stale_after)
        reply = await self._read_pools(keys=self._poll_set_keys, args=args)
        if reply is None:  # the poll set is gone (a broker restart): write it again
            await self._write_poll_set(queries)
            reply = await self._read_pools(keys=self._poll_set_keys, args=args)
        return split_reply(queries, reply)

    async def _write_poll_set(self, queries: list[PoolQuery]) -> None:
        keys, counts = poll_set(queries)
        list_key, counts_key = self._poll_set_keys
        pipe = self._client.pipeline(transaction=True)
        pipe.delete(list_key, counts_key)
        for start in range(0, len(keys), 1000):
            pipe.rpush(list_key, *keys[start : start + 1000])
        pipe.rpush(counts_key, *counts)
        pipe.expire(list_key, POLL_SET_TTL_SECONDS)
        pipe.expire(counts_key, POLL_SET_TTL_SECONDS)
        await pipe.execute()
        self._poll_set_for = queries

    async def worker_loads(self, subscription: Subscription) -> dict[str, WorkerLoad]:
        """Fresh load records of one pool by pod name, for choosing scale-down victims."""
        key = worker_state_key(subscription.pool, subscription.layout.global_keyprefix)
        records = await self._client.hgetall(key)
        now = self._clock()
        loads = {}
        for pod, raw in records.items():
            load = WorkerLoad.decode(raw)
            if load is not None and load.is_fresh(now, self._stale_after):
                loads[pod.decode() if isinstance(pod, bytes) else str(pod)] = load
        return loads

    def subscription(self, pool: str) -> Subscription | None:
        return self._subscriptions.get(pool)


def _describe(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return f"{type(exc).__name__}: {text}"[:300]


class PollerRegistry:
    """The pollers of every broker in use, created on first use and stopped when unused."""

    def __init__(self, factory: Callable[[BrokerEndpoint], BrokerPoller]) -> None:
        self._factory = factory
        self._pollers: dict[tuple[Any, ...], BrokerPoller] = {}
        self._pool_broker: dict[str, tuple[Any, ...]] = {}

    def __len__(self) -> int:
        return len(self._pollers)

    async def subscribe(self, endpoint: BrokerEndpoint, subscription: Subscription) -> BrokerPoller:
        key = (*endpoint.identity, hash((endpoint.password, endpoint.sentinel_password)))
        previous = self._pool_broker.get(subscription.pool)
        if previous is not None and previous != key:
            await self.unsubscribe(subscription.pool)
        poller = self._pollers.get(key)
        if poller is None:
            poller = self._pollers[key] = self._factory(endpoint)
        poller.subscribe(subscription)
        self._pool_broker[subscription.pool] = key
        return poller

    async def unsubscribe(self, pool: str) -> None:
        key = self._pool_broker.pop(pool, None)
        if key is None or key not in self._pollers:
            return
        if await self._pollers[key].unsubscribe(pool):
            del self._pollers[key]
