"""Webhooks reach a real HTTP server, signed, and are retried on 5xx only."""

from __future__ import annotations

import json

import pytest
from servers import HTTPRecorder
from stalk_worker.tasks.webhooks import verify
from workers import client_app

pytestmark = pytest.mark.integration

DELIVER = "stalk_worker.tasks.webhooks.deliver_webhook"
SECRET = "whsec-test"


@pytest.fixture
def hook_env(broker_env):
    return {**broker_env, "STALK_WEBHOOK_SECRET": SECRET}


def test_retried_on_503_then_delivered_with_valid_signature(workers, hook_env):
    with HTTPRecorder([503, 503, 200]) as receiver:
        workers.start(hook_env, queues=["high_priority"])
        with client_app(hook_env) as app:
            outcome = app.send_task(
                DELIVER,
                kwargs={"url": receiver.url, "event": "order.paid", "payload": {"order": 7}},
            ).get(timeout=60)
    assert outcome["status"] == 200
    assert outcome["attempts"] == 3
    assert len(receiver.requests) == 3
    deliveries = {r.headers["X-Stalk-Delivery"] for r in receiver.requests}
    assert len(deliveries) == 1, "retries must keep one delivery id so receivers can dedupe"
    for request in receiver.requests:
        assert verify(
            SECRET,
            request.headers["X-Stalk-Timestamp"],
            request.body,
            request.headers["X-Stalk-Signature"],
        )
        assert json.loads(request.body) == {"event": "order.paid", "data": {"order": 7}}
    last = receiver.requests[-1]
    assert not verify(
        "other-secret",
        last.headers["X-Stalk-Timestamp"],
        last.body,
        last.headers["X-Stalk-Signature"],
    )
    assert not verify(
        SECRET,
        last.headers["X-Stalk-Timestamp"],
        last.body + b" ",
        last.headers["X-Stalk-Signature"],
    ), "a tampered body must not verify"


def test_client_error_is_not_retried(workers, hook_env):
    with HTTPRecorder([404]) as receiver:
        workers.start(hook_env, queues=["high_priority"])
        with client_app(hook_env) as app:
            result = app.send_task(
                DELIVER, kwargs={"url": receiver.url, "event": "x", "payload": {}}
            )
            with pytest.raises(Exception, match="answered 404"):
                result.get(timeout=30)
            assert result.state == "FAILURE"
    assert len(receiver.requests) == 1


def test_unreachable_receiver_is_retried(workers, hook_env):
    from stalk_devenv.process import free_port

    workers.start(hook_env, queues=["high_priority"])
    with client_app(hook_env) as app:
        result = app.send_task(
            DELIVER, kwargs={"url": f"http://127.0.0.1:{free_port()}/", "event": "x", "payload": {}}
        )
        from workers import wait_for

        wait_for(lambda: result.state == "RETRY", 20, "the task to be scheduled for retry")
        result.revoke()
