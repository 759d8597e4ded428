"""The load record each Stalk worker keeps in Redis, and the operator reads.

Why a record of our own rather than the sources Celery already has:

* ``LLEN`` sees only what waits. Tasks a worker has taken (prefetched, or running with
  ``acks_late``) have left the lists, so a busy pool reads as empty.
* kombu's ``unacked`` hash does hold them, but for every queue of the broker in one hash,
  with whole message bodies as values: attributing it to pools costs O(messages) bytes per
  poll, and it cannot say which worker holds what.
* Celery's event heartbeats carry an active count, but need ``-E`` on every worker and a
  long-lived event consumer per broker, and arrive every 2 s regardless of change.

So each worker writes one small hash field, ``{pool hash}[<pod name>]``, about once a
second from its event loop. The operator's poll script (:mod:`stalk_broker.pool_reader`)
sums every pool's fresh records server-side in the same call as the queue lengths, and
reads one pool's records by pod only when a scale-down must choose which pods go (the
pod name is the Celery host name).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass

RECORD_VERSION = 1
POOL_KEY_TEMPLATE = "stalk:pool:{pool}"
DEFAULT_STALE_AFTER_SECONDS = 10.0
"""A record older than this is a worker that died without saying so: ignore it."""

POOL_KEY_TTL_SECONDS = 120
"""The whole hash expires when no worker of the pool has written for this long."""


def worker_state_key(pool: str, global_keyprefix: str = "") -> str:
    """The hash holding the load records of one pool (``<namespace>/<TaskQueue>``)."""
    return global_keyprefix + POOL_KEY_TEMPLATE.format(pool=pool)


@dataclass(frozen=True)
class WorkerLoad:
    """What one worker process is doing, as of ``updated``."""

    active: int
    """Tasks executing now."""

    reserved: int
    """Tasks received (prefetched) and waiting for a free process of this worker."""

    consuming: bool
    """False once the worker was told to stop taking tasks (it is draining)."""

    updated: float
    """Unix time of the write; old records are ignored."""

    runtime: float | None = None
    """Mean seconds a task of this worker runs, over the last minute (``None`` until one
    started): what sizing for a wait target needs to know of the tasks."""

    @property
    def in_flight(self) -> int:
        """Tasks this worker holds that no other worker can take."""
        return self.active + self.reserved

    @property
    def busy(self) -> bool:
        return self.in_flight > 0

    def is_fresh(self, now: float, stale_after: float = DEFAULT_STALE_AFTER_SECONDS) -> bool:
        return now - self.updated <= stale_after

    def encode(self) -> str:
        return json.dumps({"v": RECORD_VERSION, **asdict(self)}, separators=(",", ":"))

    @classmethod
    def decode(cls, raw: str | bytes) -> WorkerLoad | None:
        """Parse a record; ``None`` for anything malformed or from an unknown version."""
        try:
            data = json.loads(raw)
            if data.get("v") != RECORD_VERSION:
                return None
            return cls(
                active=max(0, int(data["active"])),
                reserved=max(0, int(data["reserved"])),
                consuming=bool(data["consuming"]),
                updated=float(data["updated"]),
                runtime=None if data.get("runtime") is None else float(data["runtime"]),
            )
        except (ValueError, TypeError, KeyError, AttributeError):
            return None
