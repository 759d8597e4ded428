"""Stamp each task's send time into its message, so that Stalk reads exactly how long
the oldest task of a queue has waited rather than estimating it.

One line in a producer (any process that sends tasks), after its Celery app is made::

    import stalk_agent.publish; stalk_agent.publish.stamp_send_times()

The time goes into the message headers (:data:`stalk_broker.pool_reader.
PUBLISHED_AT_HEADER`), which workers ignore; nothing else of the message changes. Where
producers do not opt in, the operator estimates the age from its polls, within the
bound docs/scaling.md states. Workers under the agent stamp what they send themselves
(retries, a canvas's next tasks), so that a retry never carries its first send's time.
"""

from __future__ import annotations

import time
from typing import Any

from celery.signals import before_task_publish
from stalk_broker.pool_reader import PUBLISHED_AT_HEADER

_DISPATCH_UID = "stalk-agent-published-at"


def stamp(headers: dict[str, Any] | None = None, **_: Any) -> None:
    """``before_task_publish`` receiver: the send time of this publish. One already there
    is replaced: Celery copies a task's custom headers into its retry, and the retry
    waits from when it is sent again."""
    if headers is not None:
        headers[PUBLISHED_AT_HEADER] = round(time.time(), 3)


def stamp_send_times() -> None:
    """Stamp every task this process sends from now on (any app; idempotent)."""
    before_task_publish.connect(stamp, weak=False, dispatch_uid=_DISPATCH_UID)


def stop_stamping() -> None:
    before_task_publish.disconnect(stamp, dispatch_uid=_DISPATCH_UID)
