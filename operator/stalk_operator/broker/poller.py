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
from collections.abc import Callable
from typing import Any

import redis
import redis.asyncio
from stalk_broker import BrokerEndpoint, WorkerLoad, connect_async, worker_state_key
from stalk_broker.depth import fold_queue_depths
from stalk_broker.pool_reader import ListEnds, PoolReading, script_arguments

from stalk_operator.broker.observation import (
    AGENT,
    NO_SOURCE,
    REMOTE_CONTROL,
    PoolObservation,
    Snapshot,
    Subscription,
)
from stalk_operator.broker.poll_set import PollSet
from stalk_operator.broker.remote_control import RemoteControlRounds
from stalk_operator.reporting.metrics import Metrics
from stalk_operator.scaling.waiting import ListHistory, ListView, PushTime, oldest

logger = logging.getLogger(__name__)


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
        self._poll_set = PollSet(self._client)
        self._version = 0
        """Bumped by every change of subscriptions; the poll set follows it."""
        self._polled_version = -1
        self._polled: list[Subscription] = []
        self._subscriptions: dict[str, Subscription] = {}
        self._intervals: collections.Counter[float] = collections.Counter()
        self._interval = 1.0
        self._observed: dict[str, tuple[tuple[list[Any], object], PoolObservation]] = {}
        self._remote = RemoteControlRounds(endpoint, self.label, clock)
        """For pools whose workers publish no load records."""
        self._sequence = 0
        self._histories: dict[str, ListHistory] = {}
        """Per list key, what earlier polls proved of its oldest message."""
        self._previous_poll: float | None = None
        """When the read before this poll's began: a push it did not see came later."""
        self._poll_time = 0.0
        """When this poll's read ended: a message it saw was pushed before."""
        self._read_began: float | None = None
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
        self._remote.close()
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
        started, began = time.perf_counter(), self._clock()
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
        # The script ran somewhere inside the round trip: each bound takes the safe end.
        self._previous_poll, self._read_began = self._read_began, began
        self._poll_time = self._clock()
        pools, silent = {}, []
        for subscription, (start, end) in zip(self._polled, self._poll_set.spans, strict=True):
            part = reply[start:end]
            pools[subscription.pool] = self._observation(subscription, part)
            if not part[-1]:  # no worker of this pool reports its load
                silent.append(subscription)
        self._remote.ask_if_due(silent)
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
        held = None if part[-1] else self._remote.fresh(pool)
        known = self._observed.get(pool)
        if known is not None and known[0] == (part, held):
            return known[1]
        reading = PoolReading.of(part)
        depths = tuple(fold_queue_depths(subscription.layout, subscription.queues, reading.lengths))
        pushed = self._oldest_pushed(subscription, reading)
        if reading.reporting_workers:
            observation = PoolObservation(
                depths,
                reading.in_flight,
                reading.busy_workers,
                oldest_pushed=pushed,
                task_seconds=reading.runtime,
            )
        elif held is not None:
            observation = PoolObservation(
                depths, held.in_flight, held.busy_workers, REMOTE_CONTROL, pushed
            )
        else:
            observation = PoolObservation(depths, 0, 0, NO_SOURCE, pushed)
        self._observed[pool] = ((part, held), observation)
        return observation

    def _oldest_pushed(
        self, subscription: Subscription, reading: PoolReading
    ) -> tuple[PushTime | None, ...]:
        """Per queue, when its oldest message was pushed (stalk_operator.scaling.waiting),
        from the lists' ends this poll read."""
        per_queue = []
        ends = iter(zip(reading.lengths, reading.ends, strict=True))
        for queue in subscription.queues:
            found = []
            for key in subscription.layout.queue_lists(queue):
                length, end = next(ends)
                history = self._histories.setdefault(key, ListHistory())
                found.append(
                    history.observe(_view(length, end), self._poll_time, self._previous_poll)
                )
            per_queue.append(oldest(found))
        return tuple(per_queue)

    async def _round_trip(self) -> list[Any]:
        """The script's reply for every subscribed pool (the poll set rewritten first if
        the subscriptions changed)."""
        if self._polled_version != self._version:
            # The version as read now: a pool subscribed while the write is in flight
            # bumps it again, and the next cycle writes the poll set once more.
            version, self._polled = self._version, list(self._subscriptions.values())
            await self._poll_set.write([s.query for s in self._polled])
            self._polled_version = version
            self._observed = {p: o for p, o in self._observed.items() if p in self._subscriptions}
            polled_lists = {
                key
                for s in self._polled
                for queue in s.queues
                for key in s.layout.queue_lists(queue)
            }
            self._histories = {k: h for k, h in self._histories.items() if k in polled_lists}
        if not self._polled:
            return []
        return await self._poll_set.read(script_arguments(self._clock(), self._stale_after))

    async def worker_loads(self, pool: str) -> dict[str, WorkerLoad]:
        """What each of one pool's workers holds now, by pod name, for a scale-down:
        from their load records, else from a remote-control round asked for it (a round
        every 5 s is too old to know which workers a task reached since)."""
        subscription = self._subscriptions.get(pool)
        if subscription is None:
            return {}
        observed = self._observed.get(pool)
        if observed is not None and observed[1].source != AGENT:
            held = await self._remote.ask_now(pool, subscription.layout)
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


def _view(length: int, ends: ListEnds | None) -> ListView:
    if ends is None:
        return ListView(length)
    return ListView(length, ends.tail, ends.head, ends.published_at)


def describe_error(exc: BaseException) -> str:
    """A short description of a failure for status and Events: the exception's type and
    text (redis-py and httpx put no credentials in either)."""
    text = str(exc) or type(exc).__name__
    return f"{type(exc).__name__}: {text}"[:300]
