"""Faults: the broker going away, the operator dying mid-scale."""

from __future__ import annotations

import json

import pytest
from kube import ReplicaWatch, wait_for
from stalk_devenv.redis import RedisServer
from taskqueues import taskqueue
from workers import client_app, client_env

pytestmark = pytest.mark.e2e


def events(cluster, namespace, reason):
    items = cluster.get_json("events", "--field-selector", f"reason={reason}", namespace=namespace)[
        "items"
    ]
    return [e["message"] for e in items]


def test_broker_loss_holds_falls_back_and_recovers_without_restart(
    cluster, namespace, stalk_operator, redis_password, tmp_path
):
    own = RedisServer(tmp_path / "own-redis", password="own-secret").start()
    try:
        cluster.create_secret(namespace, "own-redis", password="own-secret")
        operator = stalk_operator()
        cluster.apply(
            taskqueue(
                "billing",
                ["billing"],
                broker={
                    "url": own.url,
                    "passwordSecretRef": {"name": "own-redis", "key": "password"},
                },
                scaling={
                    "minReplicas": 1,
                    "maxReplicas": 5,
                    "fallbackReplicas": 3,
                    "scaleDown": {"stabilizationWindowSeconds": 0},
                },
            ),
            namespace=namespace,
        )
        watch = ReplicaWatch(cluster.kubeconfig, namespace, "billing")
        watch.wait_for(1, 15)
        wait_for(
            lambda: (
                cluster.taskqueue_condition(namespace, "billing", "BrokerReachable").get("status")
                == "True"
            ),
            15,
            "BrokerReachable=True",
        )
        assert "own-secret" not in json.dumps(cluster.taskqueue_status(namespace, "billing"))

        own.stop()
        wait_for(
            lambda: (
                cluster.taskqueue_condition(namespace, "billing", "BrokerReachable").get("status")
                == "False"
            ),
            20,
            "BrokerReachable=False",
        )
        watch.wait_for(3, 15)  # fallbackReplicas while the broker cannot be read
        assert cluster.taskqueue_condition(namespace, "billing", "Scaling")["reason"] == "Fallback"
        wait_for(
            lambda: events(cluster, namespace, "BrokerUnreachable"), 15, "a BrokerUnreachable Event"
        )
        assert operator.process.running(), "a broken broker never crashes the operator"

        own.start()  # same port: the broker comes back
        wait_for(
            lambda: (
                cluster.taskqueue_condition(namespace, "billing", "BrokerReachable").get("status")
                == "True"
            ),
            30,
            "BrokerReachable=True again",
        )
        wait_for(
            lambda: events(cluster, namespace, "BrokerRecovered"), 15, "a BrokerRecovered Event"
        )
        watch.wait_for(1, 30)  # back to what the (empty) queue calls for
        assert "own-secret" not in operator.log(), "no secret in the operator's log"
    finally:
        own.stop()


def test_missing_password_secret_is_reported_not_fatal(cluster, namespace, stalk_operator):
    operator = stalk_operator()
    cluster.apply(
        taskqueue(
            "orphan",
            ["orphan"],
            broker={
                "url": "redis://127.0.0.1:1/0",
                "passwordSecretRef": {"name": "does-not-exist", "key": "password"},
            },
        ),
        namespace=namespace,
    )
    wait_for(
        lambda: (
            cluster.taskqueue_condition(namespace, "orphan", "BrokerReachable").get("reason")
            == "SecretUnavailable"
        ),
        20,
        "the missing Secret reported in status",
    )
    assert (
        "does-not-exist"
        in cluster.taskqueue_condition(namespace, "orphan", "BrokerReachable")["message"]
    )
    assert operator.process.running()


def test_operator_killed_mid_scale_converges_without_flapping(
    cluster, namespace, stalk_operator, redis_db, redis_password
):
    operator = stalk_operator()
    cluster.apply(
        taskqueue(
            "ingest",
            ["ingest"],
            worker={"concurrency": 1},
            scaling={
                "minReplicas": 1,
                "maxReplicas": 12,
                "scaleDown": {"stabilizationWindowSeconds": 8, "stepIntervalSeconds": 0},
            },
        ),
        namespace=namespace,
    )
    watch = ReplicaWatch(cluster.kubeconfig, namespace, "ingest")
    watch.wait_for(1, 15)
    env = client_env(redis_db)
    with client_app(env) as app:
        for i in range(6):
            app.send_task("stalk_worker.tasks.canvas.add", args=(i, i), queue="ingest")
        watch.wait_for(6, 10)
        operator.kill()  # SIGKILL: no chance to tidy up
        for i in range(4):
            app.send_task("stalk_worker.tasks.canvas.add", args=(i, i), queue="ingest", priority=9)
    operator.start()
    watch.wait_for(10, 15)  # the new backlog, counted across priorities, in one step
    redis_db.client().flushall()  # the work disappears (consumed elsewhere)
    operator.kill()
    restarted_at = __import__("time").monotonic()
    operator.start()
    dropped_at = watch.wait_for(1, 30, after=restarted_at)
    assert dropped_at - restarted_at >= 7, (
        "after a restart nothing scales down before a whole stabilization window"
    )
    assert watch.values == [1, 6, 10, 1], f"no flapping: {watch.values}"


def test_reads_through_sentinel_and_survives_a_failover(
    cluster, namespace, stalk_operator, redis_password, tmp_path
):
    from stalk_devenv.redis import SentinelGroup

    group = SentinelGroup(tmp_path / "sentinel", password=redis_password).start()
    try:
        cluster.create_secret(namespace, "ha-redis", password=redis_password)
        stalk_operator()
        cluster.apply(
            taskqueue(
                "ha",
                ["ha"],
                broker={
                    "url": group.broker_url,
                    "masterName": group.master_name,
                    "passwordSecretRef": {"name": "ha-redis", "key": "password"},
                },
            ),
            namespace=namespace,
        )
        group.master().client().rpush("ha", *["m"] * 7)
        wait_for(
            lambda: cluster.taskqueue_status(namespace, "ha").get("backlog") == 7,
            20,
            "the backlog read through Sentinel",
        )
        old_master = group.master()
        old_master.kill()
        wait_for(
            lambda: group.master_address() != (old_master.host, old_master.port),
            30,
            "Sentinel to promote a replica",
        )
        group.master().client().rpush("ha", *["m"] * 5)
        wait_for(
            lambda: cluster.taskqueue_status(namespace, "ha").get("backlog") == 12,
            30,
            "the operator to follow the new master (7 replicated + 5 new)",
        )
        assert cluster.taskqueue_condition(namespace, "ha", "BrokerReachable")["status"] == "True"
    finally:
        group.stop()
