"""One poller per broker: every TaskQueue on it read in a single round trip.

Each cycle reads, for every subscribed pool, the length of each priority list of each of
its queues and the in-flight work of its workers, in one read-only script call
(:mod:`stalk_broker.pool_reader`): 1,000 TaskQueues cost one round trip and one small
reply. Per-pod loads are read only when a scale-down needs them.

Each cycle ends in a :class:`Snapshot` handed to ``deliver`` with the pools subscribed
(the fleet, which passes it to each pool's loop). A failed round trip is a snapshot with
an error, so every loop on the broker learns of it at once. A pool whose reading did not
change keeps the same :class:`PoolObservation` object, so its loop can tell "nothing new"
by identity.
"""

from __future__ import annotations

import asyncio
import collections
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
    PoolReading,
    check_reply,
    poll_set,
    reply_spans,
    script_arguments,
)

from stalk_operator.broker.remote_control import PoolHolding, RemoteControl
from stalk_operator.reporting.metrics import Metrics
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


AGENT, REMOTE_CONTROL, NO_SOURCE = "Agent", "RemoteControl", "None"
REMOTE_CONTROL_INTERVAL_SECONDS = 5.0
"""How often pools without load records are asked through remote control."""


@dataclass(frozen=True)
class PoolObservation:
    depths: tuple[QueueDepth, ...]
    in_flight: int
    busy_workers: int
    source: str = AGENT
    """Where ``in_flight`` and ``busy_workers`` come from: the agent's load records,
    Celery's remote control, or nothing (``None``: busy workers are not known)."""

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

    broker: str
    """The broker's location, without secrets."""

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
        deliver: Callable[[Snapshot, tuple[str, ...]], None],
        timeout_seconds: float = 2.0,
        stale_after_seconds: float = 10.0,
        client_factory: Callable[..., redis.asyncio.Redis] = connect_async,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.endpoint = endpoint
        self.label = endpoint.describe()
        self._metrics = metrics
        self._deliver = deliver
        self._stale_after = stale_after_seconds
        self._clock = clock
        self._client = client_factory(endpoint, socket_timeout=timeout_seconds)
        self._read_pools = self._client.register_script(READ_POOLS_SCRIPT)
        poller_id = uuid.uuid4().hex
        self._poll_set_keys = [
            f"stalk:pollset:{poller_id}:keys",
            f"stalk:pollset:{poller_id}:counts",
        ]
        self._version = 0
        """Bumped by every change of subscriptions; the poll set follows it."""
        self._polled_version = -1
        self._polled: list[Subscription] = []
        self._spans: list[tuple[int, int]] = []
        self._subscriptions: dict[str, Subscription] = {}
        self._intervals: collections.Counter[float] = collections.Counter()
        self._interval = 1.0
        self._observed: dict[str, tuple[tuple[list[Any], object], PoolObservation]] = {}
        self._remote: dict[str, RemoteControl] = {}
        """Remote control per key prefix, for pools whose workers publish no records."""
        self._held: dict[str, PoolHolding] = {}
        self._held_at = float("-inf")
        self._asking: asyncio.Task[None] | None = None
        self._sequence = 0
        self._task: asyncio.Task[None] | None = None
        self.last_cycle_at = 0.0
        """Monotonic time the last cycle ended, for the operator's liveness check."""

    @property
    def interval(self) -> float:
        """The shortest interval any subscriber asks for (kept, not recomputed: every
        loop reads it every poll)."""
        return self._interval

    def _count_interval(self, seconds: float, change: int) -> None:
        """Keep how many subscribers ask for each interval (a handful of distinct ones),
        so the shortest is known without a pass over 10,000 subscriptions."""
        self._intervals[seconds] += change
        if self._intervals[seconds] <= 0:
            del self._intervals[seconds]
        self._interval = min(self._intervals, default=1.0)

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    def subscription(self, pool: str) -> Subscription | None:
        return self._subscriptions.get(pool)

    def subscribe(self, subscription: Subscription) -> None:
        """Read ``subscription`` from the next cycle on (:meth:`ensure_running` starts them)."""
        previous = self._subscriptions.get(subscription.pool)
        if previous is not None:
            self._count_interval(previous.interval_seconds, -1)
        self._subscriptions[subscription.pool] = subscription
        self._count_interval(subscription.interval_seconds, +1)
        self._version += 1

    def unsubscribe(self, pool: str) -> bool:
        """Drop a pool; returns True when none is left (then :meth:`close` the poller)."""
        gone = self._subscriptions.pop(pool, None)
        self._observed.pop(pool, None)
        if gone is not None:
            self._count_interval(gone.interval_seconds, -1)
            self._version += 1
        return not self._subscriptions

    def ensure_running(self) -> bool:
        """(Re)start the polling task; returns True if it had to be started."""
        if self.running:
            return False
        if self._task is not None:
            logger.error("poller of %s had stopped; restarting it", self.label)
        self.last_cycle_at = time.monotonic()
        self._task = asyncio.create_task(self.run(), name=f"poller {self.label}")
        return True

    async def close(self) -> None:
        if self._asking is not None:
            self._asking.cancel()
        for remote in self._remote.values():
            remote.close()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await self._client.aclose()

    async def run(self) -> None:
        """Poll until cancelled. Nothing may end this loop: every TaskQueue on the broker
        waits for its snapshots, so an unexpected failure becomes an error snapshot."""
        while True:
            started = time.monotonic()
            try:
                snapshot = await self.poll_once()
            except Exception as exc:
                logger.exception("poll of %s failed unexpectedly", self.label)
                snapshot = self._failed(describe_error(exc))
            try:
                self._deliver(snapshot, tuple(self._subscriptions))
            except Exception:
                logger.exception("delivering a snapshot of %s failed", self.label)
            self.last_cycle_at = time.monotonic()
            elapsed = self.last_cycle_at - started
            await asyncio.sleep(max(0.0, self.interval - elapsed))

    async def poll_once(self) -> Snapshot:
        started = time.perf_counter()
        try:
            reply = await self._round_trip()
        except (redis.RedisError, OSError, TimeoutError) as exc:
            self._metrics.broker_errors.labels(broker=self.label).inc()
            logger.warning("cannot read broker %s: %s", self.label, type(exc).__name__)
            return self._failed(describe_error(exc))
        finally:
            self._metrics.poll_duration.labels(broker=self.label).observe(
                time.perf_counter() - started
            )
        pools, silent = {}, []
        for subscription, (start, end) in zip(self._polled, self._spans, strict=True):
            part = reply[start:end]
            pools[subscription.pool] = self._observation(subscription, part)
            if not part[-1]:  # no worker of this pool reports its load
                silent.append(subscription)
        self._ask_remote_control(silent)
        self._sequence += 1
        return Snapshot(self._sequence, self._clock(), self.label, pools=pools)

    def _failed(self, error: str) -> Snapshot:
        self._sequence += 1
        return Snapshot(self._sequence, self._clock(), self.label, error=error)

    def _observation(self, subscription: Subscription, part: list[Any]) -> PoolObservation:
        """The pool's observation: the same object as last time if its part of the reply
        (and, without load records, what remote control said) did not change, which is
        most pools on most polls; only the others are parsed."""
        pool = subscription.pool
        held = None if part[-1] else self._fresh_holding(pool)
        known = self._observed.get(pool)
        if known is not None and known[0] == (part, held):
            return known[1]
        reading = PoolReading.of(part)
        depths = tuple(fold_queue_depths(subscription.layout, subscription.queues, reading.lengths))
        if reading.reporting_workers:
            observation = PoolObservation(depths, reading.in_flight, reading.busy_workers)
        elif held is not None:
            observation = PoolObservation(depths, held.in_flight, held.busy_workers, REMOTE_CONTROL)
        else:
            observation = PoolObservation(depths, 0, 0, NO_SOURCE)
        self._observed[pool] = ((part, held), observation)
        return observation

    def _fresh_holding(self, pool: str) -> PoolHolding | None:
        if time.monotonic() - self._held_at > 3 * REMOTE_CONTROL_INTERVAL_SECONDS:
            return None
        return self._held.get(pool)

    def _ask_remote_control(self, silent: list[Subscription]) -> None:
        """Start a remote-control round for pools without load records, if one is due."""
        due = time.monotonic() - self._held_at >= REMOTE_CONTROL_INTERVAL_SECONDS
        if not silent or not due or (self._asking is not None and not self._asking.done()):
            return
        layouts = {s.layout.global_keyprefix: s.layout for s in silent}
        self._asking = asyncio.create_task(self._ask(layouts), name=f"inspect {self.label}")

    async def _ask(self, layouts: Mapping[str, KeyLayout], merge: bool = False) -> None:
        """One remote-control round per key prefix; ``merge`` keeps other prefixes' pools."""
        held: dict[str, PoolHolding] = {}
        for prefix, layout in layouts.items():
            remote = self._remote.get(prefix)
            if remote is None:
                remote = self._remote[prefix] = RemoteControl(self.endpoint, layout)
            try:
                held.update(await asyncio.to_thread(remote.ask, self._clock()))
            except Exception as exc:
                logger.warning("remote control on %s failed: %s", self.label, describe_error(exc))
        self._held = {**self._held, **held} if merge else held
        self._held_at = time.monotonic()

    async def _round_trip(self) -> list[Any]:
        """The script's reply for every subscribed pool (the poll set rewritten first if
        the subscriptions changed)."""
        if self._polled_version != self._version:
            self._polled = list(self._subscriptions.values())
            queries = [s.query for s in self._polled]
            self._spans = reply_spans(queries)
            await self._write_poll_set(queries)
            self._polled_version = self._version
            self._observed = {p: o for p, o in self._observed.items() if p in self._subscriptions}
        if not self._polled:
            return []
        args = script_arguments(self._clock(), self._stale_after)
        reply = await self._read_pools(keys=self._poll_set_keys, args=args)
        if reply is None:  # the poll set is gone (a broker restart): write it again
            await self._write_poll_set([s.query for s in self._polled])
            reply = await self._read_pools(keys=self._poll_set_keys, args=args)
        check_reply(self._spans, reply)
        return list(reply)

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

    async def worker_loads(self, pool: str) -> dict[str, WorkerLoad]:
        """What each of one pool's workers holds now, by pod name, for a scale-down:
        from their load records, else from a remote-control round asked for it (a round
        every 5 s is too old to know which workers a task reached since)."""
        subscription = self._subscriptions.get(pool)
        if subscription is None:
            return {}
        observed = self._observed.get(pool)
        if observed is not None and observed[1].source != AGENT:
            layout = subscription.layout
            await self._ask({layout.global_keyprefix: layout}, merge=True)
            held = self._held.get(pool)
            return dict(held.workers) if held is not None else {}
        key = worker_state_key(pool, subscription.layout.global_keyprefix)
        records = await self._client.hgetall(key)
        now = self._clock()
        loads = {}
        for pod, raw in records.items():
            load = WorkerLoad.decode(raw)
            if load is not None and load.is_fresh(now, self._stale_after):
                loads[pod.decode() if isinstance(pod, bytes) else str(pod)] = load
        return loads


def describe_error(exc: BaseException) -> str:
    """A short description of a failure for status and Events: the exception's type and
    text (redis-py and httpx put no credentials in either)."""
    text = str(exc) or type(exc).__name__
    return f"{type(exc).__name__}: {text}"[:300]
