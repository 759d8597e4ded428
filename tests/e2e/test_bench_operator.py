"""Benchmarks on the local control plane; each prints its figures (`make bench`)."""

from __future__ import annotations

import json
import random
import re
import statistics
import time
from pathlib import Path

import pytest
from kube import ReplicaWatch, wait_for
from scenarios import grace_scenario
from taskqueues import taskqueue
from workers import client_app, client_env

pytestmark = [pytest.mark.e2e, pytest.mark.bench]

TRIALS = 12


def test_reaction_time(cluster, namespace, stalk_operator, redis_db, redis_password):
    """Burst -> Deployment replicas patched, over bursts at random poll phases."""
    stalk_operator()
    cluster.apply(
        taskqueue(
            "burst",
            ["burst"],
            worker={"concurrency": 2},
            scaling={
                "minReplicas": 1,
                "maxReplicas": 20,
                "scaleDown": {"stabilizationWindowSeconds": 0, "stepIntervalSeconds": 0},
            },
        ),
        namespace=namespace,
    )
    watch = ReplicaWatch(cluster.kubeconfig, namespace, "burst")
    watch.wait_for(1, 15)
    env = client_env(redis_db)
    reactions = []
    with client_app(env) as app:
        for _ in range(TRIALS):
            time.sleep(random.uniform(0, 1))
            for i in range(20):
                app.send_task(
                    "stalk_worker.tasks.canvas.add",
                    args=(i, i),
                    queue="burst",
                    priority=random.randint(0, 9),
                )
            sent = time.monotonic()
            reactions.append(watch.wait_for(10, 10, after=sent) - sent)
            for key in redis_db.client().keys("burst*"):
                redis_db.client().delete(key)
            watch.wait_for(1, 10, after=sent)  # back to the minimum for the next burst
    reactions.sort()
    p50 = statistics.median(reactions)
    p95 = reactions[min(len(reactions) - 1, round(0.95 * len(reactions)) - 1)]
    print(
        f"\nreaction over {TRIALS} bursts (20 tasks at random priorities -> 10 replicas): "
        f"p50 {p50:.2f}s, p95 {p95:.2f}s, max {reactions[-1]:.2f}s "
        f"(KEDA defaults: 15-45 s)"
    )


def test_grace_with_and_without_deletion_cost(
    cluster, stalk_operator, process_kubelet, redis_db, redis_password, request
):
    """The grace scenario 3 times each way; counts pods killed mid-task."""
    import uuid

    results: dict[bool, list[dict]] = {True: [], False: []}
    for deletion_cost in (True, False, True, False, True, False):
        namespace = f"g-{uuid.uuid4().hex[:8]}"
        cluster.kubectl("create", "namespace", namespace)
        wait_for(
            lambda ns=namespace: (
                cluster.kubectl(
                    "get", "serviceaccount", "default", namespace=ns, check=False
                ).returncode
                == 0
            ),
            30,
            "the default ServiceAccount",
        )
        redis_db.client().flushall()
        seen = _grace_in(namespace, cluster, request, redis_db, redis_password, deletion_cost)
        results[deletion_cost].append(seen)
    for cost, runs in results.items():
        killed = [r["killed_pods"] for r in runs]
        lost = [r["unfinished_tasks"] for r in runs]
        print(
            f"\ngrace, pod-deletion-cost {'on ' if cost else 'off'}: pods killed mid-task "
            f"per run {killed} (total {sum(killed)}), tasks not finished {lost}"
        )


def _grace_in(namespace, cluster, request, redis_db, redis_password, deletion_cost):
    from stalk_devenv.kubelet import ProcessKubelet
    from stalk_devenv.stack import OperatorProcess, grant_operator, revoke_operator

    control_plane = cluster.control_plane
    tmp = Path(request.config._tmp_path_factory.mktemp(namespace))
    grant_operator(control_plane, namespace)
    cluster.create_secret(namespace, "redis", password=redis_password)
    operators, kubelets = [], []

    def start_operator(**env):
        operator = OperatorProcess(
            control_plane,
            namespace,
            tmp,
            {
                "STALK_DEFAULT_BROKER_URL": redis_db.url,
                "STALK_DEFAULT_REDIS_PASSWORD": redis_password,
                "STALK_DEFAULT_PASSWORD_SECRET": "redis:password",
                **env,
            },
        )
        operators.append(operator.start())
        return operator

    def start_kubelet(ns, labels):
        kubelet = ProcessKubelet(control_plane, tmp / "kubelet", labels=labels, namespace=ns)
        kubelets.append(kubelet.start())
        return kubelet

    try:
        return grace_scenario(
            cluster,
            namespace,
            start_operator,
            start_kubelet,
            redis_db,
            redis_password,
            deletion_cost=deletion_cost,
        )
    finally:
        for operator in operators:
            operator.stop()
        for kubelet in kubelets:
            kubelet.stop()
        revoke_operator(control_plane, namespace)
        cluster.kubectl("delete", "namespace", namespace, "--wait=false", check=False)


def test_operator_memory_and_poll_time_at_1000_taskqueues(cluster, namespace, stalk_operator):
    operator = stalk_operator()
    items = [
        taskqueue(f"tq-{i:04d}", [f"queue-{i}"], scaling={"minReplicas": 0}) for i in range(1000)
    ]
    started = time.monotonic()
    for chunk in range(0, 1000, 250):
        cluster.apply(items[chunk : chunk + 250], namespace=namespace)
    wait_for(
        lambda: len(cluster.get_json("deployments", namespace=namespace)["items"]) == 1000,
        600,
        "1,000 worker Deployments",
        interval=2,
    )
    created = time.monotonic() - started
    time.sleep(20)  # settle: every loop polling, statuses written
    rss = (
        int(
            re.search(
                r"VmRSS:\s+(\d+)", Path(f"/proc/{operator.process.pid}/status").read_text()
            ).group(1)
        )
        / 1024
    )
    metrics = operator.metrics()
    count = float(
        re.search(r"stalk_broker_poll_duration_seconds_count\{[^}]*\} (\S+)", metrics).group(1)
    )
    total = float(
        re.search(r"stalk_broker_poll_duration_seconds_sum\{[^}]*\} (\S+)", metrics).group(1)
    )
    statuses = sum(
        1
        for tq in cluster.get_json("tq", namespace=namespace)["items"]
        if tq.get("status", {}).get("desiredReplicas") == 0
    )
    print(
        f"\n1,000 TaskQueues: Deployments created in {created:.0f}s; operator RSS "
        f"{rss:.0f} MiB; mean poll round trip {total / count * 1000:.1f} ms over "
        f"{count:.0f} polls; {statuses} statuses reporting desiredReplicas=0"
    )
    assert json.dumps(metrics)  # the endpoint answered
