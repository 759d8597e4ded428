"""The operator with real workers behind its pods: busy workers are never scaled away."""

from __future__ import annotations

import pytest
from kube import ReplicaWatch, wait_for
from operator_harness import WORKER_LABELS, taskqueue
from workers import client_app, client_env

pytestmark = pytest.mark.e2e

SLEEP = "stalk_worker.tasks.canvas.sleep"


def grace_scenario(
    cluster,
    namespace,
    stalk_operator,
    process_kubelet,
    redis_db,
    redis_password,
    *,
    deletion_cost: bool,
):
    """4 workers; 2 finish short tasks and go idle while 2 run long ones; the pool must
    shrink to 2 and then, once the long tasks end, to 0. Returns what happened."""
    stalk_operator(STALK_POD_DELETION_COST=str(deletion_cost).lower())
    kubelet = process_kubelet(namespace, WORKER_LABELS)
    cluster.apply(
        taskqueue(
            "crunch",
            ["crunch"],
            # A 3 s grace period, shorter than the long tasks: a busy worker chosen as a
            # victim is killed mid-task, so the test sees every wrong choice.
            worker={
                "concurrency": 1,
                "taskTimeLimitSeconds": 60,
                "terminationGracePeriodSeconds": 3,
            },
            scaling={
                "minReplicas": 4,
                "maxReplicas": 4,
                "targetTasksPerReplica": 1,
                "scaleDown": {"stabilizationWindowSeconds": 3, "stepIntervalSeconds": 0},
            },
        ),
        namespace=namespace,
    )
    watch = ReplicaWatch(cluster.kubeconfig, namespace, "crunch")
    watch.wait_for(4, 15)
    pool_key = f"stalk:pool:{namespace}/crunch"
    wait_for(lambda: redis_db.client().hlen(pool_key) == 4, 60, "4 workers reporting load")
    env = client_env(redis_db)
    with client_app(env) as app:
        durations = [1, 1, 12, 12]
        results = [
            app.send_task(SLEEP, args=(d, f"task-{i}"), queue="crunch")
            for i, d in enumerate(durations)
        ]
        wait_for(
            lambda: all(r.state in ("STARTED", "SUCCESS") for r in results),
            30,
            "every task to start, one per worker",
        )
        cluster.kubectl(
            "patch",
            "tq",
            "crunch",
            "--type=merge",
            "-p",
            '{"spec":{"scaling":{"minReplicas":0}}}',
            namespace=namespace,
        )
        watch.wait_for(2, 30)
        outcomes = []
        for result in results:
            try:
                outcomes.append(result.get(timeout=25))
            except Exception:
                outcomes.append(None)
    watch.wait_for(0, 30)
    wait_for(lambda: not kubelet.running_pods(), 30, "every worker process to stop")
    wait_for(lambda: len(kubelet.finished) == 4, 30, "all 4 pods to be finished")
    killed = [p for p in kubelet.finished if p.exit_codes.get("worker") not in (0, None)]
    return {
        "history": watch.values,
        "wall_history": watch.wall_history,
        "outcomes": outcomes,
        "killed_pods": len(killed),
        "unfinished_tasks": outcomes.count(None),
    }


def test_scale_down_removes_idle_workers_only_and_busy_ones_hold_the_pool(
    cluster, namespace, stalk_operator, process_kubelet, redis_db, redis_password
):
    seen = grace_scenario(
        cluster,
        namespace,
        stalk_operator,
        process_kubelet,
        redis_db,
        redis_password,
        deletion_cost=True,
    )
    assert seen["unfinished_tasks"] == 0, seen
    assert seen["killed_pods"] == 0, seen
    assert seen["history"][-1] == 0, "idle at last, the pool scales to zero"
    first_long_done = min(o["finished"] for o in seen["outcomes"] if o["seconds"] == 12)
    reached_four = next(t for t, replicas in seen["wall_history"] if replicas == 4)
    while_both_ran = [r for t, r in seen["wall_history"] if reached_four <= t < first_long_done]
    assert while_both_ran, seen
    assert min(while_both_ran) >= 2, (
        "until a long task finished, the two busy workers held the pool"
    )
    long_hosts = {o["hostname"] for o in seen["outcomes"] if o["seconds"] == 12}
    assert len(long_hosts) == 2, "each long task ran to the end on the worker that took it"
