"""The fallback source of busy workers: Celery's remote control, against real workers of
a team's app that runs without the agent. Prints what one round costs the broker."""

from __future__ import annotations

import time

import pytest
from stalk_broker import BrokerEndpoint, KeyLayout
from stalk_operator.broker.remote_control import RemoteControl, pool_of
from team_apps import app_venv
from workers import wait_for

pytestmark = pytest.mark.integration


def commands(client) -> int:
    return sum(v["calls"] for k, v in client.info("commandstats").items())


def test_a_round_finds_each_pods_running_and_held_tasks(workers, redis_db, redis_password):
    from celery import Celery

    acme = app_venv("acme")
    url = redis_db.url.replace("redis://", f"redis://:{redis_password}@")
    env = {"ACME_BROKER_URL": url, "ACME_RESULT_BACKEND": url}
    for pod in ("render-5d8f9c7b6-abcde", "render-5d8f9c7b6-fghij"):
        workers.start(
            env,
            queues=["acme.render"],
            concurrency=1,
            hostname=f"{pod}@shop",
            app="acme_jobs",
            python=acme / "python",
            no_agent=True,
        )
    client = Celery("client", broker=url, backend=url, set_as_current=False)
    remote = RemoteControl(
        BrokerEndpoint.from_url(redis_db.url, password=redis_password), KeyLayout()
    )
    assert remote.ask(time.time()) == {} or all(
        h.busy_workers == 0 for h in remote.ask(time.time()).values()
    )
    # Prefetch 4 (ACME's own setting) on one process: one runs, the rest wait in hand.
    for i in range(3):
        client.send_task("acme_jobs.tasks.render.thumbnail", args=(f"i{i}", 4), queue="acme.render")
    wait_for(lambda: redis_db.client().llen("acme.render") == 0, 10, "the tasks taken")
    before = commands(redis_db.client())
    started = time.perf_counter()
    held = remote.ask(time.time())
    took = time.perf_counter() - started
    cost = commands(redis_db.client()) - before - 1  # the INFO call itself
    pool = held["shop/render"]
    assert pool.in_flight == 3, pool
    assert pool.busy_workers >= 1
    assert set(pool.workers) == {"render-5d8f9c7b6-abcde", "render-5d8f9c7b6-fghij"}
    remote.close()
    print(
        f"\nremote-control round (active + reserved, 2 workers answering): {cost} Redis "
        f"commands in all, {took * 1000:.0f} ms"
    )


@pytest.mark.parametrize(
    ("node", "expected"),
    [
        ("render-5d8f9c7b6-abcde@shop", ("shop/render", "render-5d8f9c7b6-abcde")),
        ("a-b-c-5d8f9c7b6-abcde@ns", ("ns/a-b-c", "a-b-c-5d8f9c7b6-abcde")),
        ("celery@host", None),
        ("worker-1@", None),
    ],
)
def test_node_names_map_to_pools(node, expected):
    assert pool_of(node) == expected
