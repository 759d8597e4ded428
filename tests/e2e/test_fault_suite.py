"""The fault suite: no TaskQueue ever stops scaling without saying so.

Each test runs a steady flow of real tasks (1.5 a second, 1-3 s each) through real
workers, injects one fault with a burst of 20 tasks behind it, and prints how long the
TaskQueue took, from the fault's end, to be written again and to reach the replicas the
burst needs, and how many tasks were lost. ``STALK_FAULTS=full`` (``make bench``) runs
the faults at full length; CI runs them shorter.
"""

from __future__ import annotations

import random
import re
import statistics
import threading
import time
from pathlib import Path

import pytest
from faults import (
    CHURN_ROUNDS,
    CHURN_SIZE,
    DOWN,
    Flow,
    controllers_caught_up,
    first_status_write_after,
    resource_version,
)
from kube import ReplicaWatch, wait_for
from stalk_devenv.redis import RedisServer
from stalk_devenv.stack import WORKER_LABELS
from taskqueues import taskqueue
from workers import client_app, client_env, unacknowledged_task_ids

pytestmark = pytest.mark.e2e

MAX = 6


def flow_taskqueue(**broker) -> dict:
    return taskqueue(
        "flow",
        ["flow"],
        broker=broker,
        worker={"concurrency": 2, "taskTimeLimitSeconds": 60},
        scaling={
            "minReplicas": 1,
            "maxReplicas": MAX,
            "targetTasksPerReplica": 2,
            "scaleDown": {"stabilizationWindowSeconds": 20},
        },
    )


@pytest.fixture
def flowing(cluster, namespace, stalk_operator, process_kubelet, redis_db):
    """The operator, real workers, the flow TaskQueue at steady state, and its flow."""
    operator = stalk_operator()
    process_kubelet(namespace, WORKER_LABELS)
    cluster.apply(flow_taskqueue(), namespace=namespace)
    watch = ReplicaWatch(cluster.kubeconfig, namespace, "flow")
    watch.wait_for(1, 15)
    wait_for(
        lambda: cluster.taskqueue_status(namespace, "flow").get("inFlightSource") == "Agent",
        60,
        "the workers' load records",
    )
    with client_app(client_env(redis_db)) as app:
        flow = Flow(app, "flow").start()
        time.sleep(5)
        yield operator, watch, flow
        flow.stop()


def report(fault: str, status_s: float, replicas_s: float, lost: int) -> None:
    print(
        f"\n{fault}: first status write {status_s:.1f}s after the fault ended, "
        f"{MAX} replicas {replicas_s:.1f}s after; tasks lost: {lost}"
    )


def run_fault(cluster, namespace, watch, flow, inject, end) -> tuple[float, float]:
    version = resource_version(cluster, namespace, "flow")
    inject()
    flow.burst(20)
    end()
    ended = time.monotonic()
    status_s = first_status_write_after(cluster, namespace, "flow", ended, version)
    replicas_s = watch.wait_for(MAX, 60, after=0) - ended
    return status_s, max(0.0, replicas_s)


def test_api_server_down(cluster, namespace, flowing, local_cluster):
    operator, watch, flow = flowing

    def down() -> None:
        local_cluster.stop_component("kube-apiserver")
        time.sleep(DOWN["apiserver"])

    try:
        status_s, replicas_s = run_fault(
            cluster,
            namespace,
            watch,
            flow,
            down,
            lambda: local_cluster.start_component("kube-apiserver"),
        )
    finally:
        controllers_caught_up(cluster)
    flow.stop()
    lost = flow.lost()
    report(f"API server down {DOWN['apiserver']}s", status_s, replicas_s, lost)
    assert lost == 0
    assert status_s < 15 and replicas_s < 20
    assert operator.healthy(), "the operator lived through it"
    # Logged once when it began (and once when it ended), not once per retry, however
    # refused connections and 5xx answers alternate while the API server stops and starts.
    faults = [line for line in operator.log().splitlines() if "); retrying" in line]
    # (A retry every 0.5-5 s over the outage would log five times or more.)
    assert faults and "KubernetesUnreachable" in faults[0], faults
    assert len(faults) <= 2, faults


def test_etcd_paused(cluster, namespace, flowing, local_cluster):
    _, watch, flow = flowing

    def pause() -> None:
        local_cluster.pause_component("etcd", True)
        time.sleep(DOWN["etcd"])

    status_s, replicas_s = run_fault(
        cluster, namespace, watch, flow, pause, lambda: local_cluster.pause_component("etcd", False)
    )
    flow.stop()
    lost = flow.lost()
    report(f"etcd paused {DOWN['etcd']}s", status_s, replicas_s, lost)
    assert lost == 0
    assert status_s < 15 and replicas_s < 20


def test_operator_stopped(cluster, namespace, flowing):
    import signal

    operator, watch, flow = flowing

    def stop() -> None:
        operator.process.send(signal.SIGSTOP)
        time.sleep(DOWN["operator"])

    status_s, replicas_s = run_fault(
        cluster, namespace, watch, flow, stop, lambda: operator.process.send(signal.SIGCONT)
    )
    flow.stop()
    lost = flow.lost()
    report(f"operator SIGSTOPped {DOWN['operator']}s", status_s, replicas_s, lost)
    assert lost == 0
    assert status_s < 5 and replicas_s < 10
    downs = [b for a, b in zip(watch.values, watch.values[1:], strict=False) if b < a]
    assert not downs, f"no scale-down while the burst was served: {watch.values}"


def test_redis_restarted_with_persistence(
    cluster, namespace, stalk_operator, process_kubelet, redis_password, tmp_path
):
    """The broker restarts with the chart's persistence (append-only): no task the
    broker acknowledged is lost, and the TaskQueue reports and recovers by itself.

    A task a worker held when the connection dropped can stay in kombu's unacknowledged
    set until the visibility timeout hands it out again: late, not lost, and counted
    apart, as in the Sentinel failover test."""
    persistent = RedisServer(tmp_path / "aof", password=redis_password, appendonly=True).start()
    try:
        cluster.create_secret(namespace, "aof", password=redis_password)
        stalk_operator()
        process_kubelet(namespace, WORKER_LABELS)
        cluster.apply(
            flow_taskqueue(
                url=persistent.url, passwordSecretRef={"name": "aof", "key": "password"}
            ),
            namespace=namespace,
        )
        watch = ReplicaWatch(cluster.kubeconfig, namespace, "flow")
        watch.wait_for(1, 15)
        with client_app(client_env(persistent)) as app:
            flow = Flow(app, "flow").start()
            time.sleep(5)
            flow.burst(20)
            persistent.restart()
            ended = time.monotonic()
            wait_for(
                lambda: (
                    cluster.taskqueue_condition(namespace, "flow", "BrokerReachable").get("status")
                    == "True"
                ),
                30,
                "BrokerReachable again",
            )
            reachable_s = time.monotonic() - ended
            replicas_s = watch.wait_for(MAX, 60) - ended
            time.sleep(3)
            flow.stop()
            unfinished = flow.unfinished(timeout=90)
            held = unacknowledged_task_ids(persistent.client())
            lost = {task_id: state for task_id, state in unfinished.items() if task_id not in held}
        print(
            f"\nRedis restarted (append-only): BrokerReachable {reachable_s:.1f}s after, "
            f"{MAX} replicas {max(0.0, replicas_s):.1f}s after; {len(flow.sent)} tasks sent, "
            f"{len(unfinished) - len(lost)} held for redelivery, lost: {len(lost)}"
        )
        assert not lost, f"tasks lost, with their last state: {lost}"
    finally:
        persistent.stop()


def _churn(cluster, namespace: str, rounds: int) -> None:
    """Create and delete CHURN_SIZE TaskQueues ``rounds`` times, beside the busy one."""
    items = []
    for i in range(CHURN_SIZE):
        item = taskqueue(f"churn-{i:03d}", [f"churn-{i}"], scaling={"minReplicas": 0})
        item["metadata"]["labels"] = {"churn": "yes"}
        items.append(item)
    for _ in range(rounds):
        cluster.apply(items, namespace=namespace)
        cluster.kubectl("delete", "tq", "-l", "churn=yes", "--wait=false", namespace=namespace)


def churn_gone(cluster, namespace: str) -> None:
    wait_for(
        lambda: not cluster.get_json("tq", "-l", "churn=yes", namespace=namespace)["items"],
        120,
        "the churned TaskQueues to be gone",
    )


def test_churn_leaves_a_busy_taskqueue_reacting_and_memory_released(
    cluster, namespace, stalk_operator, process_kubelet, redis_db
):
    operator = stalk_operator()
    busy = taskqueue(
        "busy",
        ["busy"],
        scaling={
            "minReplicas": 1,
            "maxReplicas": MAX,
            "targetTasksPerReplica": 2,
            "scaleDown": {"stabilizationWindowSeconds": 0, "stepIntervalSeconds": 0},
        },
    )
    cluster.apply(busy, namespace=namespace)
    watch = ReplicaWatch(cluster.kubeconfig, namespace, "busy")
    watch.wait_for(1, 15)
    # Steady state is an operator that has done this once: the first round loads code
    # and caches that stay (imports, decoders), which is no leak.
    _churn(cluster, namespace, 1)
    churn_gone(cluster, namespace)
    time.sleep(20)
    steady = rss_mib(operator)

    def reactions(app, trials: int = 5) -> float:
        """The median time from a burst to the replicas it needs (a poll is 1 s, so one
        burst alone says little)."""
        times = []
        for _ in range(trials):
            time.sleep(random.uniform(0, 1))
            sent = time.monotonic()
            for _ in range(20):
                app.send_task("stalk_worker.tasks.canvas.add", args=(1, 1), queue="busy")
            times.append(watch.wait_for(MAX, 30, after=sent) - sent)
            redis_db.client().delete("busy")
            watch.wait_for(1, 30, after=sent)
        return statistics.median(times)

    with client_app(client_env(redis_db)) as app:
        quiet = reactions(app)
        churning = threading.Thread(
            target=_churn, args=(cluster, namespace, CHURN_ROUNDS), daemon=True
        )
        churning.start()
        time.sleep(3)
        during = reactions(app)
        peak = rss_mib(operator)
        churning.join()
    churn_gone(cluster, namespace)
    time.sleep(20)
    after = rss_mib(operator)
    errors = sum(1 for line in operator.log().splitlines() if "ERROR" in line)
    print(
        f"\nchurn of {CHURN_ROUNDS} x {CHURN_SIZE} TaskQueues: median reaction {during:.2f}s "
        f"during it against {quiet:.2f}s quiet ({during / quiet:.1f}x); operator RSS "
        f"{steady:.0f} MiB steady, {peak:.0f} during, {after:.0f} after; {errors} error lines"
    )
    # A reaction is up to one poll interval (1 s) plus the work, so two medians of a
    # handful of bursts differ by chance below a second: compare against at least that.
    assert during <= 2 * max(quiet, 1.0), "the busy TaskQueue reacted as before"
    assert errors == 0
    assert after <= steady * 1.10, "what was kept per TaskQueue was released"


def rss_mib(operator) -> float:
    status = Path(f"/proc/{operator.process.pid}/status").read_text()
    return int(re.search(r"VmRSS:\s+(\d+)", status).group(1)) / 1024


def test_same_name_again_takes_over_within_seconds(cluster, namespace, stalk_operator):
    stalk_operator()
    cluster.apply(taskqueue("again", ["again"]), namespace=namespace)
    ReplicaWatch(cluster.kubeconfig, namespace, "again").wait_for(1, 15)
    old_uid = cluster.get_json("tq", "again", namespace=namespace)["metadata"]["uid"]
    # Deleted in the foreground would wait for the Deployment; in the background (the
    # default) the TaskQueue goes at once and its Deployment a moment later.
    cluster.kubectl("delete", "tq", "again", "--wait=false", namespace=namespace)
    cluster.apply(taskqueue("again", ["again"]), namespace=namespace)
    started = time.monotonic()
    new_uid = cluster.get_json("tq", "again", namespace=namespace)["metadata"]["uid"]
    assert new_uid != old_uid

    def owner() -> str | None:
        found = cluster.get_json("deployment", "again", namespace=namespace)
        refs = found["metadata"].get("ownerReferences") or [{}]
        return refs[0].get("uid")

    wait_for(lambda: owner() == new_uid, 30, "the new TaskQueue to own a new Deployment")
    took = time.monotonic() - started
    print(f"\nsame name again: the new TaskQueue took over in {took:.1f}s")
    assert took < 15
    wait_for(
        lambda: (
            cluster.taskqueue_condition(namespace, "again", "Ready").get("reason")
            != "WaitingForOldDeployment"
        ),
        5,
        "the status to stop waiting (written within a poll of the takeover)",
    )
