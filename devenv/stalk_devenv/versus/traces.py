"""The task traces both autoscalers are given: when each task is sent, how long it runs,
at what priority. Pure, and seeded: a trace is the same on every run.

Each trace has a full form (``make bench``) and a short one (CI). ``tail`` is how long
the run goes on after the last task has finished, so that scale-down shows: KEDA's
defaults take about 300 s to return to zero, and the burst trace waits for that.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass


@dataclass(frozen=True)
class Send:
    at: float
    """Seconds from the trace's start."""
    seconds: float
    """How long the task runs once a worker starts it."""
    priority: int | None = None
    """Celery's message priority (0-9), or none."""


@dataclass(frozen=True)
class Trace:
    name: str
    title: str
    sends: tuple[Send, ...]
    tail: float
    """Seconds the run is observed after every task has finished."""
    note: str = ""
    """What a reader must know to read the trace's figures."""

    @property
    def last_send(self) -> float:
        return max(s.at for s in self.sends)

    @property
    def work_seconds(self) -> float:
        return sum(s.seconds for s in self.sends)


def burst(count: int, seconds: float, tail: float) -> Trace:
    """Everything at once, after an idle pool: the reaction from zero and the way down."""
    sends = tuple(Send(at=1.0, seconds=seconds) for _ in range(count))
    return Trace("burst", f"burst: {count} tasks of {seconds:g} s at once", sends, tail)


def day(minutes: float, peak_per_second: float, seconds: float, tail: float) -> Trace:
    """A working day compressed: the send rate rises and falls as sin², peaking midway."""
    duration = minutes * 60
    rng = random.Random(2)
    sends, t = [], 0.0
    while t < duration:
        rate = peak_per_second * math.sin(math.pi * t / duration) ** 2
        t += rng.expovariate(max(rate, 0.05))
        if t < duration:
            sends.append(Send(at=t, seconds=seconds))
    title = f"day in {minutes:g} min: up to {peak_per_second:g} tasks/s of {seconds:g} s"
    return Trace("day", title, tuple(sends), tail)


def long_spikes(spikes: int, per_spike: int, seconds: float, every: float, tail: float) -> Trace:
    """Few long tasks at a time: the list is empty while the pool is busy."""
    sends = tuple(
        Send(at=1.0 + i * every, seconds=seconds) for i in range(spikes) for _ in range(per_spike)
    )
    title = (
        f"long tasks in spikes: {spikes} x {per_spike} tasks of {seconds:g} s, {every:g} s apart"
    )
    return Trace("spikes", title, sends, tail)


def priorities(count: int, seconds: float, tail: float) -> Trace:
    """A burst sent at Celery priorities 0-9: kombu keeps each step in a list of its own."""
    rng = random.Random(9)
    sends = tuple(Send(at=1.0, seconds=seconds, priority=rng.randint(0, 9)) for _ in range(count))
    in_base = sum(1 for s in sends if s.priority is not None and s.priority < 3)
    note = (
        f"KEDA's `redis` trigger reads the one list it names (`listName`), which holds "
        f"priorities 0-2 ({in_base} of these {count} tasks); kombu keeps 3-5, 6-8 and 9 in "
        "lists of their own, which KEDA does not see. Its low worker-seconds here come "
        "from scaling for the tasks it saw, and its waits from the ones it did not."
    )
    return Trace(
        "priorities",
        f"burst at priorities 0-9: {count} tasks of {seconds:g} s",
        sends,
        tail,
        note,
    )


def full() -> tuple[Trace, ...]:
    return (
        burst(count=48, seconds=2.0, tail=330.0),
        day(minutes=3.0, peak_per_second=6.0, seconds=1.0, tail=90.0),
        long_spikes(spikes=3, per_spike=4, seconds=40.0, every=60.0, tail=90.0),
        priorities(count=48, seconds=2.0, tail=90.0),
    )


def short() -> tuple[Trace, ...]:
    return (burst(count=24, seconds=2.0, tail=5.0),)
