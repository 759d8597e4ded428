"""A team's own Celery app, unchanged, under a TaskQueue.

ACME's app (tests/apps/acme) has its own package, config module, routes, queue names,
acks_late, prefetch 4 and a 120 s time limit, and runs from a virtualenv with Celery
alone: the process kubelet maps its image name to that virtualenv, as a node would run
the team's image. Stalk's agent reaches it the way the operator ships it by default: an
init container copies it from Stalk's image into the pod.
"""

from __future__ import annotations

import time

import pytest
from kube import ReplicaWatch, wait_for
from scenarios import LONG_TASK_SECONDS, App, grace_scenario, plain_client
from stalk_devenv.stack import WORKER_LABELS
from taskqueues import taskqueue
from team_apps import ACME_IMAGE, app_venv

pytestmark = pytest.mark.e2e

RENDER = "acme_jobs.tasks.render.thumbnail"


@pytest.fixture(scope="module")
def acme_bin():
    return app_venv("acme")


def acme(acme_bin, redis_db, **worker) -> App:
    url = redis_db.url.replace("redis://", f"redis://:{redis_db.password}@")
    return App(
        worker={"image": ACME_IMAGE, "app": "acme_jobs", **worker},
        sleep=RENDER,
        sleep_args=lambda seconds, label: (label, seconds),
        images={ACME_IMAGE: acme_bin},
        client=plain_client(url),
    )


def acme_env(redis_db, **extra: str) -> list[dict]:
    """ACME's own settings, as the team would set them in spec.worker.env: its result
    backend (its config reads it from the environment)."""
    url = redis_db.url.replace("redis://", f"redis://:{redis_db.password}@")
    return [{"name": "ACME_RESULT_BACKEND", "value": url}] + [
        {"name": k, "value": v} for k, v in extra.items()
    ]


def test_with_the_agent_busy_and_prefetched_tasks_count_and_the_pool_grows(
    cluster, namespace, stalk_operator, process_kubelet, redis_db, acme_bin
):
    stalk_operator()
    process_kubelet(namespace, WORKER_LABELS, images={ACME_IMAGE: acme_bin})
    applied = time.monotonic()
    cluster.apply(
        taskqueue(
            "render",
            ["acme.render"],
            worker={
                "image": ACME_IMAGE,
                "app": "acme_jobs",
                "concurrency": 2,
                "prefetchMultiplier": 4,
                "taskTimeLimitSeconds": 120,
                "env": acme_env(redis_db),
            },
            scaling={"minReplicas": 1, "maxReplicas": 6, "targetTasksPerReplica": 2},
        ),
        namespace=namespace,
    )
    watch = ReplicaWatch(cluster.kubeconfig, namespace, "render")
    watch.wait_for(1, 15)
    wait_for(
        lambda: cluster.taskqueue_status(namespace, "render").get("inFlightSource") == "Agent",
        90,
        "the agent's load records",
    )
    print(
        f"\nACME's image to a pool reporting to the autoscaler: {time.monotonic() - applied:.1f}s"
    )
    protected = cluster.taskqueue_condition(namespace, "render", "BusyWorkersProtected")
    assert (protected["status"], protected["reason"]) == ("True", "AgentReports")
    with acme(acme_bin, redis_db).client(redis_db) as client:
        results = [
            client.send_task(RENDER, args=(f"img-{i}", 6), queue="acme.render") for i in range(12)
        ]
        watch.wait_for(6, 20)

        def held_not_waiting() -> bool:
            # Prefetch 4 x concurrency 2: two workers take 8 each. With the list empty,
            # everything left is in flight, running or prefetched, and status shows it.
            status = cluster.taskqueue_status(namespace, "render")
            return status.get("backlog") == 0 and status.get("inFlight", 0) >= 8

        wait_for(held_not_waiting, 30, "running and prefetched tasks counted in flight")
        outcomes = [r.get(timeout=90) for r in results]
    assert all("@" + namespace in o["hostname"] for o in outcomes), "node name <pod>@<ns>"
    assert max(watch.values) == 6, f"grew as far as the formula asks: {watch.values}"


@pytest.mark.parametrize(
    ("agent", "source"), [("Injected", "Agent"), ("Disabled", "RemoteControl")]
)
def test_scale_down_interrupts_no_task(
    agent, source, cluster, namespace, stalk_operator, process_kubelet, redis_db, acme_bin
):
    """With the agent, and without it through Celery's remote control: busy workers
    hold the pool and idle ones go first."""
    app = acme(acme_bin, redis_db, agent=agent, env=acme_env(redis_db))
    seen = grace_scenario(
        cluster,
        namespace,
        stalk_operator,
        process_kubelet,
        redis_db,
        redis_db.password,
        deletion_cost=True,
        app=app,
    )
    print(f"\nACME app, agent {agent}: {seen['killed_pods']} pods killed mid-task")
    assert seen["unfinished_tasks"] == 0, seen
    assert seen["killed_pods"] == 0, seen
    assert seen["status"]["inFlightSource"] in (source, "None"), seen["status"]
    long = [o for o in seen["outcomes"] if o and o["seconds"] == LONG_TASK_SECONDS]
    long_hosts = {o["hostname"] for o in long}
    assert len(long_hosts) == 2, "each long task ran to the end on the worker that took it"


def test_without_agent_or_remote_control_the_taskqueue_says_busy_workers_are_exposed(
    cluster, namespace, stalk_operator, process_kubelet, redis_db, acme_bin
):
    stalk_operator()
    process_kubelet(namespace, WORKER_LABELS, images={ACME_IMAGE: acme_bin})
    cluster.apply(
        taskqueue(
            "blind",
            ["acme-billing"],
            worker={
                "image": ACME_IMAGE,
                "app": "acme_jobs",
                "agent": "Disabled",
                "env": acme_env(redis_db, ACME_REMOTE_CONTROL="0"),
            },
        ),
        namespace=namespace,
    )
    wait_for(
        lambda: (
            cluster.taskqueue_condition(namespace, "blind", "BusyWorkersProtected").get("status")
            == "False"
        ),
        120,
        "the BusyWorkersProtected condition to turn False",
    )
    condition = cluster.taskqueue_condition(namespace, "blind", "BusyWorkersProtected")
    assert condition["reason"] == "NotObserved"
    assert "not protected" in condition["message"]
    assert cluster.taskqueue_status(namespace, "blind")["inFlightSource"] == "None"
    deployment = cluster.get_json("deployment", "blind", namespace=namespace)
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert "livenessProbe" not in container, "no probe that would restart a healthy worker"


@pytest.mark.parametrize("app_name", ["stalk", "acme"])
def test_a_taskqueue_on_broker_db_1_consumes_its_tasks(
    app_name, cluster, namespace, stalk_operator, process_kubelet, redis_db, acme_bin
):
    stalk_operator()
    cluster.create_secret(namespace, "redis-db1", password=redis_db.password)
    images = {ACME_IMAGE: acme_bin} if app_name == "acme" else {}
    process_kubelet(namespace, WORKER_LABELS, images=images)
    url_db1 = redis_db.url.rsplit("/", 1)[0] + "/1"
    authed = url_db1.replace("redis://", f"redis://:{redis_db.password}@")
    worker = (
        {"image": ACME_IMAGE, "app": "acme_jobs", "env": acme_env(redis_db)}
        if app_name == "acme"
        else {}
    )
    if app_name == "acme":
        worker["env"] = [{"name": "ACME_RESULT_BACKEND", "value": authed}]
    queue = "acme-billing" if app_name == "acme" else "db1jobs"
    cluster.apply(
        taskqueue(
            "db1",
            [queue],
            broker={
                "url": redis_db.url,
                "db": 1,
                "passwordSecretRef": {"name": "redis-db1", "key": "password"},
            },
            worker=worker,
        ),
        namespace=namespace,
    )
    ReplicaWatch(cluster.kubeconfig, namespace, "db1").wait_for(1, 15)
    with plain_client(authed)(redis_db) as client:
        if app_name == "acme":
            result = client.send_task(
                "acme_jobs.tasks.billing.charge", args=("c-1", 250), queue=queue
            )
            assert result.get(timeout=60) == "charged c-1 250"
        else:
            result = client.send_task("stalk_worker.tasks.canvas.add", args=(2, 3), queue=queue)
            assert result.get(timeout=60) == 5
    wait_for(
        lambda: cluster.taskqueue_status(namespace, "db1").get("broker", "").endswith("/1"),
        15,
        "status naming the broker's db 1",
    )


@pytest.mark.bench
def test_bench_interrupted_tasks_with_no_source_of_busy_workers(
    cluster, namespace, stalk_operator, process_kubelet, redis_db, acme_bin
):
    """The third mode, for the figures: no agent and remote control off. Nothing tells
    the operator which workers are busy, so the ReplicaSet picks victims at random;
    printed beside the 0 of the other two modes (no assertion: it is chance)."""
    app = acme(
        acme_bin,
        redis_db,
        agent="Disabled",
        env=acme_env(redis_db, ACME_REMOTE_CONTROL="0"),
    )
    seen = grace_scenario(
        cluster,
        namespace,
        stalk_operator,
        process_kubelet,
        redis_db,
        redis_db.password,
        deletion_cost=True,
        app=app,
        busy_known=False,
    )
    print(
        f"\nACME app, no agent and no remote control: {seen['killed_pods']} pods killed "
        f"mid-task, {seen['unfinished_tasks']} tasks not finished"
    )
