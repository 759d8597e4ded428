"""The operator on a real API server with real Redis: Deployments, scaling, status, Events."""

from __future__ import annotations

import time

import pytest
from kube import ReplicaWatch, wait_for
from taskqueues import taskqueue
from workers import client_app, client_env

pytestmark = pytest.mark.e2e


def deployment(cluster, namespace, name):
    result = cluster.kubectl(
        "get", "deployment", name, "-o", "json", namespace=namespace, check=False
    )
    if result.returncode != 0:
        return None
    import json

    return json.loads(result.stdout)


def test_taskqueue_owns_a_deployment_that_follows_its_spec(cluster, namespace, stalk_operator):
    stalk_operator()
    cluster.apply(
        taskqueue(
            "emails",
            ["email", "email-bulk"],
            worker={"concurrency": 3, "taskTimeLimitSeconds": 60},
            scaling={"minReplicas": 2, "maxReplicas": 5},
        ),
        namespace=namespace,
    )
    wait_for(lambda: deployment(cluster, namespace, "emails"), 15, "the worker Deployment")
    wait_for(
        lambda: deployment(cluster, namespace, "emails")["spec"]["replicas"] == 2,
        15,
        "replicas raised to minReplicas",
    )
    dep = deployment(cluster, namespace, "emails")
    [owner] = dep["metadata"]["ownerReferences"]
    assert (owner["kind"], owner["name"], owner["controller"]) == ("TaskQueue", "emails", True)
    pod = dep["spec"]["template"]["spec"]
    [container] = pod["containers"]
    command = container["command"]
    assert command[:4] == ["celery", "-A", "stalk_worker.app", "worker"]
    assert command[command.index("--queues") + 1] == "email,email-bulk"
    assert command[command.index("--concurrency") + 1] == "3"
    assert command[command.index("--hostname") + 1] == "$(POD_NAME)@$(POD_NAMESPACE)"
    assert command[command.index("--include") + 1] == "stalk_agent.boot"
    assert command[command.index("--time-limit") + 1] == "60"
    assert pod["initContainers"][0]["command"][-2:] == ["stalk_agent.install", "/opt/stalk-agent"]
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    env = {e["name"]: e for e in container["env"]}
    assert env["STALK_POOL"]["value"] == f"{namespace}/emails"
    assert env["STALK_REDIS_PASSWORD"]["valueFrom"]["secretKeyRef"] == {
        "name": "redis",
        "key": "password",
    }
    assert pod["terminationGracePeriodSeconds"] == 90, "time limit 60 s + 30 s margin"
    assert container["securityContext"]["readOnlyRootFilesystem"] is True

    listing = cluster.kubectl("get", "tq", namespace=namespace).stdout
    assert listing.split("\n")[0].split() == [
        "NAME",
        "QUEUES",
        "BACKLOG",
        "IN-FLIGHT",
        "WAIT",
        "DESIRED",
        "READY",
        "MIN",
        "MAX",
        "AGE",
    ]

    cluster.kubectl(
        "patch",
        "tq",
        "emails",
        "--type=merge",
        "-p",
        '{"spec":{"worker":{"concurrency":5}}}',
        namespace=namespace,
    )
    wait_for(
        lambda: (
            "5"
            in deployment(cluster, namespace, "emails")["spec"]["template"]["spec"]["containers"][
                0
            ]["command"]
        ),
        15,
        "the spec change to roll the Deployment",
    )
    rolled = deployment(cluster, namespace, "emails")
    assert rolled["spec"]["replicas"] == 2, "a spec change must not reset replicas"
    assert rolled["metadata"]["generation"] > dep["metadata"]["generation"]

    cluster.kubectl("delete", "tq", "emails", namespace=namespace)
    wait_for(
        lambda: deployment(cluster, namespace, "emails") is None,
        30,
        "the Deployment to be garbage-collected with its TaskQueue",
    )


def test_burst_at_every_priority_is_counted_and_scaled_within_2s(
    cluster, namespace, stalk_operator, redis_db, redis_password
):
    operator = stalk_operator()
    cluster.apply(
        taskqueue(
            "reports",
            ["reports"],
            worker={"concurrency": 2},
            scaling={"minReplicas": 1, "maxReplicas": 20},
        ),
        namespace=namespace,
    )
    watch = ReplicaWatch(cluster.kubeconfig, namespace, "reports")
    watch.wait_for(1, 15)  # the pool at its minimum
    env = client_env(redis_db)
    sent_at = time.time()
    with client_app(env) as app:
        for i in range(30):
            app.send_task(
                "stalk_worker.tasks.canvas.add", args=(i, i), queue="reports", priority=i % 10
            )
    burst_at = time.monotonic()
    # 30 tasks / 2 per replica = 15 replicas, in one step
    reaction = watch.wait_for(15, 10, after=burst_at) - burst_at
    assert watch.values == [1, 15]
    print(f"\nreaction: burst -> replicas patched in {reaction:.2f}s")
    assert reaction <= 2.0
    assert redis_db.client().llen("reports") == 9, "most of the burst sits in priority lists"
    wait_for(
        lambda: cluster.taskqueue_status(namespace, "reports").get("backlog") == 30,
        10,
        "status.backlog to count every priority list",
    )
    status = cluster.taskqueue_status(namespace, "reports")
    assert status["backlogByQueue"] == {"reports": 30}
    assert status["desiredReplicas"] == 15
    assert (
        next(c for c in status["conditions"] if c["type"] == "BrokerReachable")["status"] == "True"
    )
    assert next(c for c in status["conditions"] if c["type"] == "Scaling")["status"] == "True"
    metrics = operator.metrics()
    labels = f'namespace="{namespace}",taskqueue="reports"'
    assert f"stalk_taskqueue_backlog{{{labels}}} 30.0" in metrics
    # The exposition format sorts labels by name.
    assert (
        f'stalk_queue_length{{namespace="{namespace}",priority="9",queue="reports",'
        'taskqueue="reports"} 3.0'
    ) in metrics
    assert f'stalk_scale_events_total{{direction="up",{labels}}} 1.0' in metrics

    # No worker consumes here: the oldest task's wait grows, in status, in kubectl's
    # WAIT column and in the metric, within the estimate's bound (a burst into an empty
    # queue is known within half a poll) and the status's two significant figures.
    wait_for(
        lambda: cluster.taskqueue_status(namespace, "reports").get("oldestWaitSeconds", 0) >= 4,
        20,
        "status.oldestWaitSeconds to grow while nothing consumes",
    )
    status = cluster.taskqueue_status(namespace, "reports")
    waited = time.time() - sent_at
    assert 4 <= status["oldestWaitSeconds"] <= waited * 1.05 + 0.5, (status, waited)
    assert set(status["oldestWaitByQueue"]) == {"reports"}
    header, row = cluster.kubectl("get", "tq", "reports", namespace=namespace).stdout.splitlines()
    assert header.split()[4] == "WAIT" and float(row.split()[4]) >= 4, (header, row)
    scraped = operator.metrics()
    line = next(
        line
        for line in scraped.splitlines()
        if line.startswith(f'stalk_queue_oldest_wait_seconds{{namespace="{namespace}",')
    )
    assert 4 <= float(line.rsplit(" ", 1)[1]) <= time.time() - sent_at + 0.6, line
    events = cluster.kubectl(
        "get",
        "events",
        "--field-selector",
        "involvedObject.kind=TaskQueue,reason=ScaledUp",
        namespace=namespace,
    ).stdout
    assert "1 -> 15 replicas" in events
