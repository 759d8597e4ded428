"""How the worker runs: through Sentinel, with users' task modules, reporting its load."""

from __future__ import annotations

import textwrap
import time

import pytest
from stalk_broker import WorkerLoad, worker_state_key
from workers import client_app, wait_for

pytestmark = pytest.mark.integration


def test_worker_through_sentinel_processes_tasks(workers, sentinel_group, redis_password, tmp_path):
    env = {
        "STALK_BROKER_URL": sentinel_group.broker_url,
        "STALK_SENTINEL_MASTER": sentinel_group.master_name,
        "STALK_REDIS_PASSWORD": redis_password,
    }
    sentinel_group.master().client().flushall()
    workers.start(env, queues=["default"])
    with client_app(env) as app:
        assert app.send_task("stalk_worker.tasks.canvas.add", args=(20, 22)).get(timeout=30) == 42
    master = sentinel_group.master().client()
    assert master.exists("_kombu.binding.default"), "the worker declared its queue on the master"


def test_task_modules_from_environment_and_entry_points(workers, broker_env, tmp_path):
    plugins = tmp_path / "plugins"
    plugins.mkdir()
    (plugins / "acme_billing.py").write_text(
        textwrap.dedent("""
        from celery import shared_task

        @shared_task(name="acme.billing.invoice_total")
        def invoice_total(lines):
            return sum(line["qty"] * line["price"] for line in lines)
    """)
    )
    (plugins / "acme_search.py").write_text(
        textwrap.dedent("""
        from celery import shared_task

        @shared_task(name="acme.search.reindex")
        def reindex(ids):
            return {"reindexed": len(ids)}
    """)
    )
    # A distribution registering a module under the stalk.tasks entry point group, the
    # way a company's package would when installed into the worker image.
    dist = plugins / "acme_search-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: acme-search\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[stalk.tasks]\nsearch = acme_search\n")

    env = {**broker_env, "STALK_TASK_MODULES": "acme_billing"}
    workers.start(env, queues=["default"], pythonpath=[plugins])
    with client_app(env) as app:
        lines = [{"qty": 2, "price": 5}, {"qty": 1, "price": 3}]
        assert app.send_task("acme.billing.invoice_total", args=[lines]).get(timeout=30) == 13
        assert app.send_task("acme.search.reindex", args=[[1, 2, 3]]).get(timeout=30) == {
            "reindexed": 3
        }


def test_worker_publishes_its_load_while_running_tasks(workers, broker_env, redis_db):
    env = {
        **broker_env,
        "STALK_POOL": "shop/emails",
        "POD_NAME": "emails-7d9f-abcde",  # the downward API, as the operator sets it
        "STALK_LOAD_REPORT_INTERVAL_SECONDS": "0.2",
    }
    worker = workers.start(env, queues=["default"], concurrency=2, hostname="emails-7d9f-abcde")
    key = worker_state_key("shop/emails")
    client = redis_db.client()

    def load() -> WorkerLoad | None:
        raw = client.hget(key, "emails-7d9f-abcde")
        return WorkerLoad.decode(raw) if raw else None

    wait_for(lambda: load() is not None, 10, "the first load record")
    assert load().in_flight == 0 and load().consuming
    with client_app(env) as app:
        results = [app.send_task("stalk_worker.tasks.canvas.sleep", args=(3,)) for _ in range(2)]
        wait_for(lambda: load().active == 2, 10, "both tasks to show as active")
        assert load().is_fresh(time.time())
        for result in results:
            result.get(timeout=30)
    wait_for(lambda: load().active == 0, 10, "the record to show the worker idle")
    assert client.ttl(key) > 0, "the pool's hash must expire if every worker disappears"
    worker.terminate()
    assert client.hget(key, "emails-7d9f-abcde") is None, "a stopping worker removes its record"


def test_healthz_follows_the_event_loop(workers, broker_env):
    """The agent's /healthz answers from the worker's event loop: a solo pool running a
    task blocks that loop, and /healthz says so once the beat is older than the bound."""
    env = {**broker_env, "STALK_AGENT_HEALTH_STALE_SECONDS": "1"}
    worker = workers.start(env, queues=["default"], extra_args=["--pool", "solo"])
    code, body = worker.health()
    assert code == 200 and body.startswith("alive"), body
    with client_app(env) as app:
        result = app.send_task("stalk_worker.tasks.canvas.sleep", args=(4,))
        wait_for(lambda: worker.health()[0] == 503, 10, "/healthz to fail while the loop is held")
        assert "last beat" in worker.health()[1]
        result.get(timeout=30)
    wait_for(lambda: worker.health()[0] == 200, 10, "/healthz to recover")
    worker.terminate()
