"""Benchmarks on the local control plane; each prints its figures (`make bench`)."""

from __future__ import annotations

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


@pytest.mark.timeout(3600)
@pytest.mark.parametrize("count", [1000, 10000])
def test_operator_memory_and_poll_time(count, cluster, namespace, stalk_operator):
    """Breadth: ``count`` idle TaskQueues on one broker. Prints the operator's memory per
    TaskQueue and the poll cycle's p95 over a steady minute; asserts every TaskQueue
    reported and the poll was measured."""
    operator = stalk_operator()
    time.sleep(3)
    idle_rss = rss_mib(operator.process.pid)
    items = [
        taskqueue(f"tq-{i:05d}", [f"queue-{i}"], scaling={"minReplicas": 0}) for i in range(count)
    ]
    started = time.monotonic()
    for chunk in range(0, count, 250):
        cluster.apply(items[chunk : chunk + 250], namespace=namespace)
    wait_for(
        lambda: reported(cluster, namespace) == count,
        60 + count * 0.1,
        f"{count} TaskQueues to report desiredReplicas=0",
        interval=5,
    )
    settled = time.monotonic() - started
    before = poll_histogram(operator.metrics())
    time.sleep(60)
    scrape_started = time.monotonic()
    after = poll_histogram(operator.metrics())
    scrape = time.monotonic() - scrape_started
    rss = rss_mib(operator.process.pid)
    polls = after["count"] - before["count"]
    assert polls >= 30, f"the broker was polled {polls} times in a minute"
    p95 = histogram_quantile(0.95, before, after)
    mean = (after["sum"] - before["sum"]) / polls
    assert len(cluster.get_json("deployments", namespace=namespace)["items"]) == count
    print(
        f"\n{count:,} TaskQueues: all reporting {settled:.0f}s after the first apply; operator "
        f"RSS {rss:.0f} MiB ({idle_rss:.0f} MiB idle, "
        f"{(rss - idle_rss) * 1024 / count:.1f} KiB per TaskQueue); poll cycle over a steady "
        f"minute: mean {mean * 1000:.1f} ms, p95 <= {p95 * 1000:.0f} ms ({polls:.0f} polls); "
        f"one /metrics scrape {scrape * 1000:.0f} ms"
    )


def rss_mib(pid: int) -> float:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"VmRSS:\s+(\d+)", status).group(1)) / 1024


def reported(cluster, namespace: str) -> int:
    items = cluster.get_json("tq", namespace=namespace)["items"]
    return sum(1 for tq in items if tq.get("status", {}).get("desiredReplicas") == 0)


def poll_histogram(text: str) -> dict:
    """The poll-duration histogram of one scrape: buckets, sum and count."""
    from prometheus_client.parser import text_string_to_metric_families

    found = {"buckets": {}, "sum": 0.0, "count": 0.0}
    for family in text_string_to_metric_families(text):
        if family.name != "stalk_broker_poll_duration_seconds":
            continue
        for sample in family.samples:
            if sample.name.endswith("_bucket"):
                bound = float(sample.labels["le"])
                found["buckets"][bound] = found["buckets"].get(bound, 0) + sample.value
            elif sample.name.endswith("_sum"):
                found["sum"] += sample.value
            elif sample.name.endswith("_count"):
                found["count"] += sample.value
    assert found["count"], "the operator exports stalk_broker_poll_duration_seconds"
    return found


def histogram_quantile(q: float, before: dict, after: dict) -> float:
    """The upper bound of the bucket holding the q-quantile of what happened in between."""
    total = after["count"] - before["count"]
    for bound in sorted(after["buckets"]):
        if after["buckets"][bound] - before["buckets"].get(bound, 0) >= q * total:
            return bound
    return float("inf")
