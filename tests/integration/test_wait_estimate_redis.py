"""How long the oldest task has waited, as the poller reads it from a real Redis: tasks
sent by Celery at known times and priorities, no worker consuming.

Without the publish hook the estimate must hold the true age within the bound it
states; with it (stalk_agent.publish), the age is exact."""

from __future__ import annotations

import asyncio
import time

import pytest
from celery import Celery
from prometheus_client import CollectorRegistry
from stalk_agent import publish
from stalk_broker import BrokerEndpoint, KeyLayout
from stalk_broker.pool_reader import PUBLISHED_AT_HEADER
from stalk_operator.broker import BrokerPoller, Subscription
from stalk_operator.reporting.metrics import Metrics

pytestmark = pytest.mark.integration

POOL = "ns/mail"
QUEUES = ("mail", "mail-bulk")


def producer(url: str, password: str) -> Celery:
    app = Celery("producer", broker=url.replace("redis://", f"redis://:{password}@"))
    app.conf.update(task_serializer="json", accept_content=["json"])
    return app


def run_polls(endpoint: BrokerEndpoint, schedule, polls: int) -> list[tuple[float, object, float]]:
    """Poll once a second for ``polls`` seconds; ``schedule(i)`` runs before poll i.
    Returns (poll time, the pool's observation, how long the poll took) per poll."""

    async def scenario() -> list[tuple[float, object, float]]:
        poller = BrokerPoller(
            endpoint, metrics=Metrics(CollectorRegistry()), deliver=lambda snapshot, pools: None
        )
        poller.subscribe(Subscription(POOL, QUEUES, KeyLayout(), interval_seconds=1))
        seen = []
        for i in range(polls):
            schedule(i)
            began = time.time()
            snapshot = await poller.poll_once()
            seen.append((snapshot.taken_at, snapshot.pools[POOL], snapshot.taken_at - began))
            await asyncio.sleep(1.0)
        await poller.close()
        return seen

    return asyncio.run(scenario())


def test_the_estimate_holds_the_true_age_of_the_oldest_task_over_every_priority(
    redis_db, redis_password
):
    app = producer(redis_db.url, redis_password)
    sent: list[tuple[float, str]] = []

    def schedule(i: int) -> None:
        # A trickle at priority 0, then a burst at priorities 3-9 on the second queue,
        # sent between polls as a producer would.
        if i in (1, 2, 3):
            sent.append((time.time(), "mail"))
            app.send_task("t", queue="mail", priority=0)
        if i == 4:
            for priority in (9, 6, 3, 9):
                sent.append((time.time(), "mail-bulk"))
                app.send_task("t", queue="mail-bulk", priority=priority)

    seen = run_polls(BrokerEndpoint.from_url(redis_db.url, password=redis_password), schedule, 9)
    checked = 0
    # A push is dated between the start of the read that missed it and the end of the
    # one that saw it: half the interval, plus the reads' own time (ms on an idle machine).
    bound = 0.5 + max(took for _, _, took in seen) + 0.05
    for taken_at, observation, _ in seen:
        pushed = observation.pool_oldest_pushed
        if not sent or taken_at < sent[0][0]:
            assert pushed is None
            continue
        estimate = pushed.age(taken_at)
        true_age = taken_at - sent[0][0]  # nothing consumes: the first send is the oldest
        assert estimate.error is not None and estimate.error <= bound, (estimate, bound)
        assert abs(estimate.seconds - true_age) <= estimate.error + 0.05, (estimate, true_age)
        by_queue = dict(zip(QUEUES, observation.oldest_pushed, strict=True))
        if by_queue["mail-bulk"] is not None:  # the burst's lists, read as one queue
            bulk_age = by_queue["mail-bulk"].age(taken_at)
            first_bulk = next(t for t, q in sent if q == "mail-bulk")
            assert abs(bulk_age.seconds - (taken_at - first_bulk)) <= bulk_age.error + 0.05
        checked += 1
    assert checked >= 6
    print(
        f"\nlast estimate {estimate.seconds:.2f} s +- {estimate.error:.2f} s, true {true_age:.2f} s"
        f" (stated bound {bound:.2f} s)"
    )


def test_with_the_publish_hook_the_age_is_exact(redis_db, redis_password):
    app = producer(redis_db.url, redis_password)
    sent: list[float] = []
    publish.stamp_send_times()
    try:

        def schedule(i: int) -> None:
            if i == 0:
                for priority in (0, 9):
                    sent.append(time.time())
                    app.send_task("t", queue="mail", priority=priority)
            if i == 1:
                # A retry: Celery copies the first send's headers, stamp included; the
                # retry waits from its own send, so the tasks above stay the oldest.
                first_send = {PUBLISHED_AT_HEADER: time.time() - 600}
                app.send_task("t", queue="mail-bulk", headers=first_send)

        seen = run_polls(
            BrokerEndpoint.from_url(redis_db.url, password=redis_password), schedule, 3
        )
    finally:
        publish.stop_stamping()
    for taken_at, observation, _ in seen:
        estimate = observation.pool_oldest_pushed.age(taken_at)
        assert estimate.exact
        assert abs(estimate.seconds - (taken_at - sent[0])) <= 0.01, estimate
