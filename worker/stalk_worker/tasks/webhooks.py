"""Signed webhooks: POST a JSON event, retried on 5xx, 429 and timeouts only.

The receiver verifies ``X-Stalk-Signature: sha256=<hex>``, the HMAC-SHA256 of
``<timestamp>.<body>`` under the shared secret, and rejects old timestamps against
replay. ``X-Stalk-Delivery`` stays the same across retries so the receiver can dedupe.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
import urllib.error
import urllib.request
from typing import Any

from celery import shared_task

from stalk_worker.runtime import settings
from stalk_worker.taskkit import RETRY_TRANSIENT, PermanentError, TransientError

SIGNATURE_HEADER = "X-Stalk-Signature"
TIMESTAMP_HEADER = "X-Stalk-Timestamp"
DELIVERY_HEADER = "X-Stalk-Delivery"
EVENT_HEADER = "X-Stalk-Event"


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """The signature header value for ``body`` sent at ``timestamp``."""
    digest = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return "sha256=" + digest.hexdigest()


def verify(
    secret: str,
    timestamp: str,
    body: bytes,
    signature: str,
    *,
    tolerance_seconds: float = 300,
    now: float | None = None,
) -> bool:
    """What a receiver does: a matching signature on a recent timestamp."""
    current = time.time() if now is None else now
    try:
        fresh = abs(current - float(timestamp)) <= tolerance_seconds
    except ValueError:
        return False
    return fresh and hmac.compare_digest(sign(secret, timestamp, body), signature)


def _is_transient_status(status: int) -> bool:
    return status >= 500 or status in (408, 425, 429)


@shared_task(
    name="stalk_worker.tasks.webhooks.deliver_webhook",
    rate_limit="20/s",
    soft_time_limit=30,
    time_limit=45,
    **RETRY_TRANSIENT,
)
def deliver_webhook(
    self: Any,
    url: str,
    event: str,
    payload: dict[str, Any],
    delivery_id: str | None = None,
) -> dict[str, Any]:
    """Deliver ``payload`` as event ``event``; returns the receiver's status code."""
    if not url.startswith(("https://", "http://")):
        raise PermanentError(f"webhook URL must be http(s): {url!r}")
    config = settings()
    body = json.dumps(
        {"event": event, "data": payload}, sort_keys=True, separators=(",", ":")
    ).encode()
    timestamp = str(int(time.time()))
    delivery = delivery_id or self.request.id
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "stalk-webhooks/1",
        EVENT_HEADER: event,
        DELIVERY_HEADER: delivery,
        TIMESTAMP_HEADER: timestamp,
    }
    if config.webhook_secret:
        headers[SIGNATURE_HEADER] = sign(config.webhook_secret.reveal(), timestamp, body)
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")  # noqa: S310
    try:
        with urllib.request.urlopen(request, timeout=config.webhook_timeout_seconds) as reply:  # noqa: S310
            status = reply.status
    except urllib.error.HTTPError as exc:
        if _is_transient_status(exc.code):
            raise TransientError(f"{url} answered {exc.code}") from None
        raise PermanentError(f"{url} answered {exc.code}") from None
    except (urllib.error.URLError, TimeoutError, ConnectionError) as exc:
        raise TransientError(f"{url} unreachable: {exc}") from None
    return {"status": status, "delivery": delivery, "attempts": self.request.retries + 1}
