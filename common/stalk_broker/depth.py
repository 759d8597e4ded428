"""Queue depth over every priority list, in one pipelined round trip.

Split into "queue the commands" and "fold the replies" so that the same code serves a
blocking pipeline (worker tasks) and an asyncio pipeline (the operator), and so that
callers can put other commands in the same round trip.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from stalk_broker.keys import KeyLayout

BINDING_PREFIX = "_kombu.binding."


class _Pipeline(Protocol):
    def llen(self, name: str) -> Any: ...


@dataclass(frozen=True)
class QueueDepth:
    """Messages waiting in one queue, by priority step."""

    queue: str
    by_step: dict[int, int]

    @property
    def total(self) -> int:
        return sum(self.by_step.values())


def queue_depth_commands(pipe: _Pipeline, layout: KeyLayout, queues: Iterable[str]) -> int:
    """Queue one ``LLEN`` per priority list of each queue; returns how many were queued."""
    count = 0
    for queue in queues:
        for key in layout.queue_lists(queue):
            pipe.llen(key)
            count += 1
    return count


def fold_queue_depths(
    layout: KeyLayout, queues: Sequence[str], replies: Sequence[Any]
) -> list[QueueDepth]:
    """Pair the replies of :func:`queue_depth_commands` with their queues."""
    steps = layout.priority_steps
    if len(replies) != len(queues) * len(steps):
        raise ValueError("replies do not match the queued depth commands")
    depths = []
    for index, queue in enumerate(queues):
        chunk = replies[index * len(steps) : (index + 1) * len(steps)]
        by_step = {step: int(n) for step, n in zip(steps, chunk, strict=True)}
        depths.append(QueueDepth(queue, by_step))
    return depths


def parse_binding(member: bytes | str, separator: str) -> str | None:
    """The queue name in a member of a kombu ``_kombu.binding.<exchange>`` set."""
    text = member.decode() if isinstance(member, bytes) else member
    parts = text.split(separator)
    return parts[-1] or None if len(parts) == 3 else None
