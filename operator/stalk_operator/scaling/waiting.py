"""How long the oldest waiting task of a list has waited, from what polls can read. Pure.

kombu pushes each message onto the head of its priority list (``LPUSH``) and workers
take from the tail (``BRPOP``): the tail is the oldest message, the head the newest. A
poll reads, per list, its length, an identity of its tail and of its head (a hash of the
message), and the tail's publish time where the producer stamped one. Nothing else is
needed of producers. What polls prove about when the tail was pushed:

1. A message seen at a poll was pushed by then, and the tail no later than the head.
2. A head that is not the previous poll's head was pushed after that poll: a message
   already there would sit behind the previous head, and the previous head can only
   leave after it.
3. Everything in a list was pushed after the last poll that saw the list empty.
4. A new tail was pushed after the tail before it (first in, first out).

So the tail's push time lies in ``[earliest, latest]``: its age is reported as the
middle of that span, within half its width. A tail that was a head at some poll is
known within one poll interval (rule 2), as is every message of a list fed more slowly
than the polls, or of a burst into an empty list (rule 3). A burst into a list that
already waits gets the bound of the tail before it (rule 4), which can be wide, and the
width says so. With no earlier bound at all (the operator started into a backlog), the
age is "at least" the time since the message was first seen.

A stamped message (the producer opted in, see ``stalk_agent.publish``) gives its exact
age, as far as the producer's clock agrees with the operator's; a stamp later than rule 1
allows (a clock ahead) is not believed, and the bounds stand.

kombu requeues a message of a lost worker onto the tail (``RPUSH``): it is older than
rule 4 assumes, and is counted from its requeue.
"""

from __future__ import annotations

from dataclasses import dataclass, field

MAX_REMEMBERED_HEADS = 4096
"""Heads remembered per list until they are consumed: one per poll at which the head
changed, so an hour of one-second polls under a backlog that never drains."""


@dataclass(frozen=True)
class ListView:
    """One priority list as one poll read it."""

    length: int
    tail: int = 0
    """Identity of the oldest message; 0 when the list is empty."""
    head: int = 0
    """Identity of the newest message; 0 when the list is empty."""
    stamped_at: float | None = None
    """The tail's publish time, where the producer stamped it."""


@dataclass(frozen=True)
class WaitEstimate:
    seconds: float
    """The oldest message's age: exact, the middle of its bounds, or (when ``error`` is
    ``None`` and it is not exact) a lower bound."""
    error: float | None
    """Half the width of the bounds; ``None`` when there is no upper bound."""
    exact: bool = False

    @property
    def at_least(self) -> bool:
        return self.error is None and not self.exact


@dataclass(frozen=True)
class PushTime:
    """When a list's oldest message was pushed: absolute, so that it stays the same
    object from poll to poll while the list does not change, and ages by the clock."""

    earliest: float | None
    """No earlier than this; ``None`` when nothing bounds it."""
    latest: float
    exact: bool = False

    def age(self, now: float) -> WaitEstimate:
        if self.exact:
            return WaitEstimate(max(0.0, now - self.latest), 0.0, exact=True)
        if self.earliest is None:
            return WaitEstimate(max(0.0, now - self.latest), None)
        return WaitEstimate(
            now - (self.earliest + self.latest) / 2, (self.latest - self.earliest) / 2
        )


@dataclass
class ListHistory:
    """What earlier polls of one list proved: kept by the poller, one per list, and fed
    only the polls at which the list changed (an unchanged list proves nothing new)."""

    was_empty: bool | None = None
    """Whether the last poll fed in saw the list empty; ``None`` before the first."""
    head: int = 0
    empty_at: float | None = None
    tail: int = 0
    tail_pushed: tuple[float | None, float] = (None, 0.0)
    """``(earliest, latest)`` push time of the current tail."""
    heads: dict[int, tuple[float | None, float]] = field(default_factory=dict)
    """Push-time bounds of heads seen, kept until the tail has passed them."""

    def observe(self, view: ListView, now: float, previous_poll: float | None) -> PushTime | None:
        """Take the view of the list a poll at ``now`` read, the broker's previous poll
        having been at ``previous_poll`` (the list unchanged since this history's last
        view); when its oldest message was pushed, or ``None`` when it is empty."""
        if self.was_empty is None:
            # The list's first view: the broker's previous poll (a list newly subscribed
            # to a broker already polled) did not read it, and proves nothing about it.
            previous_poll = None
        if view.length == 0:
            self.was_empty, self.empty_at, self.head, self.tail = True, now, 0, 0
            self.heads.clear()
            return None
        if self.was_empty and previous_poll is not None:  # still empty at the last poll
            self.empty_at = previous_poll
        self.was_empty = False
        if view.head != self.head:  # rule 2 (rule 3 on the first poll after empty)
            self.heads[view.head] = (previous_poll, now)
            self.head = view.head
            if len(self.heads) > MAX_REMEMBERED_HEADS:
                del self.heads[next(iter(self.heads))]
        if view.tail != self.tail:
            self.tail_pushed = self.heads.get(view.tail) or (
                _latest(self.empty_at, self.tail_pushed[0] if self.tail else None),  # 3, 4
                self.heads[view.head][1],  # rule 1: no later than the head
            )
            self.tail = view.tail
            self._forget_consumed()
        earliest, latest = self.tail_pushed
        if view.stamped_at is not None and view.stamped_at <= latest:
            # Earlier than the bounds is believed: a requeued message (see above) is.
            return PushTime(view.stamped_at, view.stamped_at, exact=True)
        return PushTime(_latest(earliest, self.empty_at), latest)

    def _forget_consumed(self) -> None:
        """Heads pushed before the tail was are gone: only the tail's side leaves."""
        earliest = self.tail_pushed[0]
        if earliest is None:
            return
        for identity, (_, latest) in list(self.heads.items()):
            if latest <= earliest and identity not in (self.tail, self.head):
                del self.heads[identity]


def _latest(*times: float | None) -> float | None:
    known = [t for t in times if t is not None]
    return max(known) if known else None


def oldest(pushed: list[PushTime | None]) -> PushTime | None:
    """When the oldest of several lists' tails (a queue's priority lists, a pool's
    queues) was pushed: the earliest of their push times lies between the earliest of
    their lower bounds (none if one has none) and the earliest of their upper bounds."""
    known = [p for p in pushed if p is not None]
    if not known:
        return None
    if len(known) == 1:
        return known[0]
    lowers = [p.earliest for p in known]
    earliest = None if None in lowers else min(t for t in lowers if t is not None)
    latest = min(p.latest for p in known)
    return PushTime(earliest, latest, exact=earliest == latest)
