"""The Redis keys kombu stores a Celery queue in.

kombu's Redis transport keeps each priority band of a queue in its own list, named
``<prefix><queue><sep><step>`` (the band for step 0 has no suffix), where ``sep`` and the
steps are transport options. Counting only ``LLEN <queue>``, as KEDA's redis scaler does,
misses every message sent with a priority. The defaults are read from kombu itself so
that they cannot drift from the transport that writes the lists.
"""

from __future__ import annotations

from dataclasses import dataclass

from kombu.transport.redis import PRIORITY_STEPS as _KOMBU_PRIORITY_STEPS
from kombu.transport.redis import Channel as _KombuRedisChannel

DEFAULT_PRIORITY_STEPS: tuple[int, ...] = tuple(_KOMBU_PRIORITY_STEPS)
PRIORITY_SEPARATOR: str = _KombuRedisChannel.sep


@dataclass(frozen=True)
class KeyLayout:
    """How one broker names its keys: the transport options that shape key names."""

    global_keyprefix: str = ""
    """kombu's ``global_keyprefix`` transport option, prepended to every key."""

    priority_steps: tuple[int, ...] = DEFAULT_PRIORITY_STEPS
    """kombu's ``priority_steps`` transport option: one list per step."""

    separator: str = PRIORITY_SEPARATOR
    """kombu's ``sep``: between a queue name and its priority step."""

    def __post_init__(self) -> None:
        if not self.priority_steps or 0 not in self.priority_steps:
            raise ValueError("priority_steps must include 0, the band kombu names plainly")
        if sorted(set(self.priority_steps)) != list(self.priority_steps):
            raise ValueError("priority_steps must be strictly increasing")

    def queue_lists(self, queue: str) -> list[str]:
        """Every list that holds messages of ``queue``, one per priority step."""
        return [self.prefixed(self.priority_list(queue, step)) for step in self.priority_steps]

    def priority_list(self, queue: str, step: int) -> str:
        """The unprefixed list name kombu uses for ``queue`` at ``step``."""
        return queue if step == 0 else f"{queue}{self.separator}{step}"

    def prefixed(self, key: str) -> str:
        return f"{self.global_keyprefix}{key}"
