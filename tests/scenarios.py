"""Scenarios several e2e tests and benchmarks run: real workers behind the operator's pods."""

from __future__ import annotations

from kube import ReplicaWatch, wait_for
from stalk_devenv.stack import WORKER_LABELS
from taskqueues import taskqueue
from workers import client_app, client_env

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
