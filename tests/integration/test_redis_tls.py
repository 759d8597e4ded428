"""Every Stalk client over TLS to Redis and its Sentinels, each verifying the server:
Debian's redis-server and redis-sentinel in TLS-only mode (no plain port; replication
and the Sentinels' own links in TLS too), so a client that got through spoke TLS."""

from __future__ import annotations

import asyncio
import base64
import os
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from beats import chart_beat
from redis.backoff import NoBackoff
from redis.retry import Retry
from stalk_broker import (
    BrokerEndpoint,
    KeyLayout,
    WorkerLoad,
    connect,
    connect_async,
    worker_state_key,
)
from stalk_broker.settings import BrokerSettings
from stalk_devenv.pki import CertificateAuthority
from stalk_devenv.process import ManagedProcess, free_port
from stalk_devenv.redis import SentinelGroup, ServerTLS
from stalk_operator.broker.remote_control import RemoteControl
from team_apps import app_venv
from workers import client_app, running_flower, wait_for

pytestmark = pytest.mark.integration

HOSTS = ("127.0.0.1", "127.0.0.2", "127.0.0.3")
ONCE = {"retry": Retry(NoBackoff(), 0)}
"""For clients expected to fail: redis-py would retry with backoff first."""
SLEEP = "stalk_worker.tasks.canvas.sleep"
QUEUE = "sealed"
REDIS_PASSWORD = "tls-redis-secret"
POD = "sealed-5d8f9c7b6-abcde"


@pytest.fixture(scope="module")
def tls_group(
    require_redis: None, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[SentinelGroup]:
    root = tmp_path_factory.mktemp("tls")
    tls = ServerTLS.issue(root / "pki", HOSTS)
    group = SentinelGroup(root / "group", password=REDIS_PASSWORD, hosts=HOSTS, tls=tls).start()
    yield group
    group.stop()


def tls_env(group: SentinelGroup, tmp_path: Path) -> dict[str, str]:
    """What a worker pod of a TaskQueue on this broker is given."""
    assert group.tls is not None
    return {
        "STALK_BROKER_URL": group.broker_url,
        "STALK_SENTINEL_MASTER": group.master_name,
        "STALK_REDIS_PASSWORD": REDIS_PASSWORD,
        "STALK_REDIS_TLS": "true",
        "STALK_REDIS_CA_FILE": str(group.tls.ca),
        "STALK_SCRATCH_DIR": str(tmp_path / "scratch"),
        "STALK_REPORTS_DIR": str(tmp_path / "reports"),
        "STALK_SMTP_SECURITY": "none",
    }


def test_workers_producers_and_the_operator_work_over_tls_through_sentinel(
    tls_group, workers, tmp_path
):
    env = tls_env(tls_group, tmp_path)
    tls_group.master().client().flushall()
    # Named as a pod of the TaskQueue's Deployment: how remote-control replies are grouped.
    worker = workers.start(env, queues=[QUEUE], concurrency=1, hostname=f"{POD}@tls")
    endpoint = BrokerSettings.from_environ(env).broker()
    with client_app(env) as app:
        # Result backend over TLS too: the producer reads the results back.
        running = app.send_task(SLEEP, args=(3,), queue=QUEUE)
        waiting = [app.send_task(SLEEP, args=(0,), queue=QUEUE) for _ in range(2)]
        wait_for(lambda: connect(endpoint).llen(QUEUE) == 2, 15, "one task taken, two waiting")

        async def depth() -> int:
            client = connect_async(endpoint)
            try:
                return int(await client.llen(QUEUE))
            finally:
                await client.aclose()

        # The operator's poller (asyncio, through the Sentinels) and its remote control.
        assert asyncio.run(depth()) == 2
        remote = RemoteControl(endpoint, KeyLayout())
        try:
            held = remote.ask(time.time())
        finally:
            remote.close()
        assert set(held["tls/sealed"].workers) == {POD}, held
        assert held["tls/sealed"].in_flight == 1, held
        for result in (running, *waiting):
            assert result.get(timeout=30) is not None
    assert worker.beating()


def test_beat_fires_over_tls_through_sentinel(tls_group, tmp_path):
    command, env = chart_beat({"sealed-2s": 2}, max_loop=1)
    env.update(tls_env(tls_group, tmp_path))
    client = tls_group.master().client()
    client.flushall()
    beat = ManagedProcess(
        "beat-tls",
        [sys.executable, "-m", *command],
        tmp_path,
        env={**os.environ, **env, "STALK_AGENT_HEALTH_PORT": str(free_port())},
    )
    beat.start()
    try:
        wait_for(lambda: client.llen("sealed-2s") >= 2, 20, "beat to fire twice")
        assert "Acquired lock" in beat.log_tail(200)
    finally:
        beat.stop(grace=5)


def test_a_client_that_cannot_verify_the_server_gets_nothing(tls_group, tmp_path):
    env = tls_env(tls_group, tmp_path)
    trusted = BrokerSettings.from_environ(env).broker()
    stranger = CertificateAuthority(tmp_path / "other-ca", name="someone-else")
    untrusted = BrokerEndpoint.from_url(
        trusted.celery_url(),
        master_name=trusted.master_name,
        tls=True,
        ca_file=str(stranger.cert_path),
    )
    with pytest.raises(redis.ConnectionError):
        connect(untrusted, socket_timeout=0.5).ping()
    sentinel_host, sentinel_port = tls_group.sentinel_hosts[0]
    with pytest.raises(redis.ConnectionError, match="certificate verify failed"):
        redis.Redis(
            host=sentinel_host, port=sentinel_port, **untrusted.sentinel_link_kwargs(0.5), **ONCE
        ).ping()
    # The host name is checked (by every redis-py, not only 6.0 on): the certificate
    # names the addresses, not "localhost".
    host, port = tls_group.master_address()
    misnamed = redis.Redis(
        host="localhost", port=port, password=REDIS_PASSWORD, **trusted.ssl_kwargs(), **ONCE
    )
    with pytest.raises(redis.ConnectionError, match=r"match|hostname|verify"):
        misnamed.ping()
    # No plain port to fall back to.
    with pytest.raises(redis.ConnectionError):
        redis.Redis(host=host, port=port, password=REDIS_PASSWORD, socket_timeout=2, **ONCE).ping()
    assert connect(trusted).ping()


def test_a_teams_app_under_the_agent_consumes_over_tls(tls_group, workers, tmp_path):
    """ACME's app knows nothing of TLS or Sentinel: the agent points its broker there."""
    from celery import Celery
    from stalk_agent.install import install

    agent = tmp_path / "stalk-agent"
    install(agent)
    # ACME's results go back through its broker: no second Redis to set up for it.
    env = {
        **tls_env(tls_group, tmp_path),
        "ACME_RESULT_BACKEND": "rpc://",
        "STALK_POOL": "shop/render",
        "POD_NAME": POD,
        "STALK_LOAD_REPORT_INTERVAL_SECONDS": "0.2",
    }
    tls_group.master().client().flushall()
    worker = workers.start(
        env,
        queues=["acme.render"],
        concurrency=1,
        app="acme_jobs",
        python=app_venv("acme") / "python",
        pythonpath=[agent],
        hostname=POD,
    )
    endpoint = BrokerSettings.from_environ(env).broker()
    producer = Celery("producer", broker=endpoint.celery_url(), set_as_current=False)
    producer.conf.broker_transport_options = endpoint.celery_transport_options()
    producer.conf.broker_use_ssl = endpoint.celery_ssl()
    producer.send_task("acme_jobs.tasks.render.thumbnail", args=("tls", 0), queue="acme.render")
    wait_for(lambda: "succeeded" in worker.log(), 30, "ACME's worker to run the task")
    raw = tls_group.master().client().hget(worker_state_key("shop/render"), POD)
    assert raw and WorkerLoad.decode(raw) is not None, "the agent's load record, over TLS"


def test_flower_sees_workers_and_task_events_over_tls(tls_group, workers, tmp_path):
    """Flower as the chart runs it (``celery -A stalk_worker.app flower``): events and
    remote control over the TLS broker, so its metrics and worker list are filled."""
    env = tls_env(tls_group, tmp_path)
    tls_group.master().client().flushall()
    workers.start(env, queues=[QUEUE], concurrency=1, hostname=f"{POD}@tls")
    password = "flower-tls-password"
    auth = {"Authorization": "Basic " + base64.b64encode(f"admin:{password}".encode()).decode()}
    with running_flower(env, tmp_path / "logs", password) as (flower, port):

        def get(path: str) -> str:
            request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", headers=auth)
            with urllib.request.urlopen(request, timeout=10) as reply:
                return reply.read().decode()

        # Events are fanned out: only those sent after Flower subscribed reach it.
        wait_for(lambda: "Connected to" in flower.log_tail(50), 30, "Flower to subscribe")
        with client_app(env) as app:

            def succeeded() -> bool:
                app.send_task(SLEEP, args=(0,), queue=QUEUE).get(timeout=30)
                return 'type="task-succeeded"' in get("/metrics")

            wait_for(succeeded, 30, "Flower to count a task's success from its events")
        assert f"{POD}@tls" in get("/api/workers?refresh=1")
