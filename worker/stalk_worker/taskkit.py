"""What every task module needs: which errors to retry, how, and run-once markers.

Companies writing their own task modules on the Stalk image are meant to use this too:

    from celery import shared_task
    from stalk_worker.taskkit import RETRY_TRANSIENT, TransientError

    @shared_task(**RETRY_TRANSIENT)
    def charge(order_id): ...
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache
from typing import Any

import redis
from stalk_broker import connect

from stalk_worker.runtime import settings

logger = logging.getLogger(__name__)


class TransientError(Exception):
    """A failure worth retrying: the other side may succeed later (5xx, timeout, 4xx SMTP)."""


class PermanentError(Exception):
    """A failure a retry cannot fix (bad input, 4xx HTTP, 5xx SMTP): fail at once."""


RETRY_TRANSIENT: dict[str, Any] = {
    "bind": True,
    "autoretry_for": (TransientError,),
    "dont_autoretry_for": (PermanentError,),
    "retry_backoff": 2,
    "retry_backoff_max": 600,
    "retry_jitter": True,
    "max_retries": 6,
}
"""Options for ``@shared_task``: exponential backoff (2 s, 4 s, ... up to 10 min) with
full jitter, for :class:`TransientError` only."""

DONE_MARKER_TTL_SECONDS = 7 * 24 * 3600
_DONE_PREFIX = "stalk:done:"


@lru_cache(maxsize=1)
def broker_client() -> redis.Redis:
    """A Redis client to the broker (through Sentinel if configured), for task bookkeeping."""
    return connect(settings().broker())


def _marker(key: str) -> str:
    return settings().global_keyprefix + _DONE_PREFIX + key


def already_done(key: str) -> bool:
    """Whether a side effect named ``key`` was recorded as done by :func:`mark_done`."""
    return bool(broker_client().exists(_marker(key)))


def mark_done(key: str) -> None:
    broker_client().set(_marker(key), "1", ex=DONE_MARKER_TTL_SECONDS)


@contextmanager
def once(key: str) -> Iterator[bool]:
    """Run a side effect at most once per ``key`` across retries and redeliveries.

    Yields ``False`` when it was already done (skip it); otherwise yields ``True`` and
    records it as done if the block finishes without an exception. A crash between the
    effect and the record can still repeat it, so receivers should also dedupe by key.
    """
    if already_done(key):
        logger.info("skipping %s: already done", key)
        yield False
        return
    yield True
    mark_done(key)
