"""A TaskQueue on a broker that speaks only TLS: Redis and three Sentinels (Debian's, in
TLS-only mode), the CA in a Secret the TaskQueue names. The operator reads the backlog
through the Sentinels with it, and the worker pods it renders mount it and consume."""

from __future__ import annotations

import pytest
from kube import ReplicaWatch, wait_for
from stalk_devenv.redis import SentinelGroup, ServerTLS
from stalk_devenv.stack import WORKER_LABELS
from taskqueues import taskqueue
from workers import client_app

pytestmark = pytest.mark.e2e

HOSTS = ("127.0.0.1", "127.0.0.2", "127.0.0.3")
SLEEP = "stalk_worker.tasks.canvas.sleep"


def test_a_taskqueue_on_a_tls_broker_scales_and_its_pods_consume(
    cluster, namespace, stalk_operator, process_kubelet, redis_password, tmp_path
):
    tls = ServerTLS.issue(tmp_path / "pki", HOSTS)
    group = SentinelGroup(tmp_path / "sealed", password=redis_password, hosts=HOSTS, tls=tls)
    group.start()
    try:
        cluster.create_secret(
            namespace, "sealed-redis", password=redis_password, **{"ca.crt": tls.ca.read_text()}
        )
        stalk_operator()
        process_kubelet(namespace, WORKER_LABELS)
        ref = {"name": "sealed-redis"}
        cluster.apply(
            taskqueue(
                "sealed",
                ["sealed"],
                broker={
                    "url": group.broker_url,
                    "masterName": group.master_name,
                    "passwordSecretRef": {**ref, "key": "password"},
                    "tls": {"enabled": True, "caSecretRef": {**ref, "key": "ca.crt"}},
                },
                scaling={"minReplicas": 0, "maxReplicas": 2, "targetTasksPerReplica": 2},
            ),
            namespace=namespace,
        )
        watch = ReplicaWatch(cluster.kubeconfig, namespace, "sealed")
        producer_env = {
            "STALK_BROKER_URL": group.broker_url,
            "STALK_SENTINEL_MASTER": group.master_name,
            "STALK_REDIS_PASSWORD": redis_password,
            "STALK_REDIS_TLS": "true",
            "STALK_REDIS_CA_FILE": str(tls.ca),
        }
        with client_app(producer_env) as app:
            sent = [app.send_task(SLEEP, args=(2,), queue="sealed") for _ in range(4)]
            wait_for(
                lambda: cluster.taskqueue_status(namespace, "sealed").get("backlog", 0) >= 1,
                20,
                "the backlog read through the Sentinels over TLS",
            )
            watch.wait_for(2, 30)
            for result in sent:
                assert result.get(timeout=90)["seconds"] == 2
        condition = cluster.taskqueue_condition(namespace, "sealed", "BrokerReachable")
        assert condition["status"] == "True", condition
    finally:
        group.stop()
