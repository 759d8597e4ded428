"""Real Celery workers behind Deployment pods, run by the process kubelet."""

from __future__ import annotations

import pytest
from kube import wait_for
from workers import client_app, client_env

pytestmark = pytest.mark.e2e

LABELS = {"app": "celery-worker"}


def worker_deployment(replicas: int, broker_url: str, grace_seconds: int = 30) -> dict:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "celery-worker"},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": LABELS},
            "template": {
                "metadata": {"labels": LABELS},
                "spec": {
                    "terminationGracePeriodSeconds": grace_seconds,
                    "volumes": [{"name": "tmp", "emptyDir": {}}],
                    "containers": [
                        {
                            "name": "worker",
                            "image": "stalk-worker:dev",
                            "command": ["celery", "-A", "stalk_worker.app", "worker"],
                            "args": [
                                "-Q",
                                "default",
                                "-c",
                                "1",
                                "-n",
                                "$(POD_NAME)",
                                "--without-gossip",
                                "--without-mingle",
                                "-l",
                                "INFO",
                            ],
                            "env": [
                                {
                                    "name": "POD_NAME",
                                    "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}},
                                },
                                {"name": "STALK_BROKER_URL", "value": broker_url},
                                {
                                    "name": "STALK_REDIS_PASSWORD",
                                    "valueFrom": {
                                        "secretKeyRef": {"name": "redis", "key": "password"}
                                    },
                                },
                            ],
                            "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
                        }
                    ],
                },
            },
        },
    }


def live_pods(cluster, namespace):
    return cluster.get_json("pods", "-l", "app=celery-worker", namespace=namespace)["items"]


def test_workers_run_tasks_and_drain_on_scale_down(
    cluster, namespace, process_kubelet, redis_db, redis_password
):
    cluster.create_secret(namespace, "redis", password=redis_password)
    kubelet = process_kubelet(namespace, LABELS)
    cluster.apply(worker_deployment(2, redis_db.url), namespace=namespace)
    wait_for(lambda: len(kubelet.running_pods()) == 2, 60, "2 worker processes")

    env = client_env(redis_db)
    with client_app(env) as app:
        results = [
            app.send_task("stalk_worker.tasks.canvas.sleep", args=(6, f"t{i}")) for i in range(2)
        ]
        wait_for(
            lambda: all(r.state == "STARTED" for r in results),
            60,
            "both tasks to start, one per worker",
        )
        pod_names = {p["metadata"]["name"] for p in live_pods(cluster, namespace)}

        cluster.kubectl("scale", "deployment", "celery-worker", "--replicas=0", namespace=namespace)
        wait_for(
            lambda: all(
                p["metadata"].get("deletionTimestamp") for p in live_pods(cluster, namespace)
            ),
            10,
            "the pods to be Terminating",
        )
        assert len(live_pods(cluster, namespace)) == 2, (
            "pods stay Terminating while their workers drain, as with a real kubelet"
        )
        outcomes = [r.get(timeout=60) for r in results]

    assert {o["hostname"].split("@")[1] for o in outcomes} == pod_names, (
        "each pod's name is its worker's Celery host name"
    )
    wait_for(lambda: not live_pods(cluster, namespace), 30, "the pods to be gone")
    wait_for(lambda: len(kubelet.finished) == 2, 30, "both processes to exit")
    for pod in kubelet.finished:
        assert pod.exit_codes == {"worker": 0}, "a warm shutdown exits 0, before the grace period"
        log = kubelet.log_path(namespace, pod.name, "worker").read_text()
        assert "Warm shutdown" in log
        assert (pod.directory / "volumes" / "tmp").is_dir(), "emptyDir /tmp is per pod"


def test_sigkill_after_the_grace_period(
    cluster, namespace, process_kubelet, redis_db, redis_password
):
    cluster.create_secret(namespace, "redis", password=redis_password)
    kubelet = process_kubelet(namespace, LABELS)
    cluster.apply(worker_deployment(1, redis_db.url, grace_seconds=2), namespace=namespace)
    wait_for(lambda: len(kubelet.running_pods()) == 1, 60, "1 worker process")
    env = client_env(redis_db)
    with client_app(env) as app:
        result = app.send_task("stalk_worker.tasks.canvas.sleep", args=(30,))
        wait_for(lambda: result.state == "STARTED", 60, "the task to start")
        cluster.kubectl("scale", "deployment", "celery-worker", "--replicas=0", namespace=namespace)
        wait_for(lambda: len(kubelet.finished) == 1, 20, "the process to be killed")
    [pod] = kubelet.finished
    assert pod.exit_codes["worker"] == -9, "SIGKILL once the 2 s grace period ran out"
    # acks_late: the interrupted task was not acknowledged, so it is still in the broker.
    assert redis_db.client().hlen("unacked") == 1
