"""What a poll of a broker says: the subscription a pool is read with, what was observed
of it, and the snapshot of all pools a round trip delivers. Values only."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from stalk_broker import KeyLayout
from stalk_broker.depth import QueueDepth
from stalk_broker.pool_reader import PoolQuery

from stalk_operator.scaling import Load
from stalk_operator.scaling.waiting import PushTime, oldest


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


@dataclass(frozen=True)
class PoolObservation:
    depths: tuple[QueueDepth, ...]
    in_flight: int
    busy_workers: int
    source: str = AGENT
    """Where ``in_flight`` and ``busy_workers`` come from: the agent's load records,
    Celery's remote control, or nothing (``None``: busy workers are not known)."""
    oldest_pushed: tuple[PushTime | None, ...] = ()
    """Per queue (as ``depths``), when its oldest waiting message was pushed, over
    every priority list; ``None`` for an empty queue."""
    task_seconds: float | None = None
    """Mean seconds a task runs, as the pool's agents measure it."""

    @property
    def pool_oldest_pushed(self) -> PushTime | None:
        """The pool's oldest waiting message, over all its queues."""
        return oldest(list(self.oldest_pushed))

    @property
    def backlog(self) -> int:
        return sum(d.total for d in self.depths)

    def load(self, now: float) -> Load:
        """What the decision sees at ``now``: the oldest wait is an age, so it grows."""
        pushed = self.pool_oldest_pushed
        return Load(
            backlog=self.backlog,
            in_flight=self.in_flight,
            busy_workers=self.busy_workers,
            oldest_wait=0.0 if pushed is None else pushed.age(now).seconds,
            task_seconds=self.task_seconds,
        )


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
