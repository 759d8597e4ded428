"""helm install of the chart into the real control plane: the operator it deploys runs as
a real process under the chart's own RBAC, and the TaskQueue from values gets workers."""

from __future__ import annotations

import base64

import pytest
from http_probe import http_status
from kube import wait_for
from stalk_devenv.controlplane import REPO_ROOT
from stalk_devenv.process import free_port
from stalk_devenv.stack import WORKER_LABELS
from workers import client_app, client_env

pytestmark = pytest.mark.e2e

CHART = REPO_ROOT / "charts" / "stalk"


def check_flower(cluster, namespace, kubelet, port):
    """Flower runs with basic auth on, from a Secret the chart generated."""
    wait_for(lambda: kubelet.running_pods(), 30, "the Flower pod running as a process")
    wait_for(
        lambda: http_status(f"http://127.0.0.1:{port}/healthcheck") == 200,
        60,
        "Flower to answer its health check",
    )
    assert http_status(f"http://127.0.0.1:{port}/") == 401, "Flower must require auth"
    secret = cluster.get_json("secret", "stalk-flower-auth", namespace=namespace)
    user = base64.b64decode(secret["data"]["username"]).decode()
    password = base64.b64decode(secret["data"]["password"]).decode()
    assert user == "admin" and len(password) >= 20
    assert http_status(f"http://127.0.0.1:{port}/", f"{user}:{password}") == 200
    assert http_status(f"http://127.0.0.1:{port}/", "admin:wrong") == 401
    # What the chart's ServiceMonitor scrapes, with the same keys.
    assert http_status(f"http://127.0.0.1:{port}/metrics", f"{user}:{password}") == 200


def test_install_upgrade_uninstall(
    local_cluster, cluster, stalk_crds, namespace, process_kubelet, redis_db, redis_password
):
    cluster.create_secret(namespace, "redis", password=redis_password)
    operator_kubelet = process_kubelet(namespace, {"app.kubernetes.io/component": "operator"})
    process_kubelet(namespace, WORKER_LABELS)
    flower_kubelet = process_kubelet(namespace, {"app.kubernetes.io/component": "flower"})
    beat_kubelet = process_kubelet(namespace, {"app.kubernetes.io/component": "beat"})
    flower_port = free_port()
    values = [
        "--set",
        f"broker.url={redis_db.url}",
        "--set",
        "broker.existingSecret=redis",
        # The bundled Redis is installed too, its pods Running on KWOK nodes; its scripts
        # run on real processes in tests/integration/test_chart_redis.py. Without a volume
        # provisioner here, its data lives in emptyDirs.
        "--set",
        "redis.persistence.enabled=false",
        "--set",
        "beat.schedule.tick.task=stalk_worker.tasks.canvas.add",
        "--set",
        "beat.schedule.tick.every=1",
        "--set",
        "beat.schedule.tick.queue=ticks",
        "--set-json",
        "beat.schedule.tick.args=[1,1]",
        "--set",
        "helmTest.queue=jobs",
        "--set",
        "operator.clusterWide=false",
        # The operator runs as a local process here: give it free ports.
        "--set",
        "operator.extraEnv[0].name=STALK_METRICS_PORT",
        "--set-string",
        f"operator.extraEnv[0].value={free_port()}",
        "--set",
        "operator.extraEnv[1].name=STALK_HEALTH_PORT",
        "--set-string",
        f"operator.extraEnv[1].value={free_port()}",
        "--set",
        "taskQueues[0].name=jobs",
        "--set",
        "taskQueues[0].queues={jobs}",
        "--set",
        "taskQueues[0].scaling.minReplicas=1",
        "--set",
        f"flower.port={flower_port}",
    ]
    out = local_cluster.helm(
        "install",
        "stalk",
        str(CHART),
        f"--namespace={namespace}",
        "--wait",
        "--timeout=60s",
        *values,
    )
    assert "Add a pool of workers" in out, "NOTES.txt is shown"
    assert "NetworkPolicies are off" in out and "networkPolicy.workerNamespaces" in out
    wait_for(lambda: operator_kubelet.running_pods(), 30, "the operator pod running as a process")
    wait_for(
        lambda: (
            cluster.kubectl(
                "get", "deployment", "jobs", namespace=namespace, check=False
            ).returncode
            == 0
        ),
        60,
        "the operator (under the chart's RBAC) to create the worker Deployment",
    )
    check_flower(cluster, namespace, flower_kubelet, flower_port)
    pods = cluster.get_json("pods", namespace=namespace)["items"]
    assert {p["status"]["phase"] for p in pods} == {"Running"}, "every pod Running"
    assert len([p for p in pods if "redis" in p["metadata"]["name"]]) == 3
    wait_for(lambda: beat_kubelet.running_pods(), 30, "beat running as a process")
    wait_for(lambda: redis_db.client().llen("ticks") >= 2, 30, "beat to send its scheduled task")

    # `helm test`: the hook pod sends a task with the chart's settings and gets its result.
    test_kubelet = process_kubelet(namespace, {"app.kubernetes.io/component": "test"})
    tested = local_cluster.helm("test", "stalk", f"--namespace={namespace}", "--timeout=120s")
    assert "Phase:          Succeeded" in tested, tested
    assert [p.exit_codes for p in test_kubelet.finished] == [{"send-task": 0}]
    env = client_env(redis_db)
    with client_app(env) as app:
        result = app.send_task("stalk_worker.tasks.canvas.add", args=(2, 3), queue="jobs")
        assert result.get(timeout=60) == 5, "a worker of the chart's TaskQueue ran the task"

    def generations() -> dict[str, int]:
        objects = cluster.get_json("deployments,statefulsets", namespace=namespace)["items"]
        return {
            f"{o['kind']}/{o['metadata']['name']}": o["metadata"]["generation"]
            for o in objects
            if o["metadata"]["name"].startswith("stalk")
        }

    before = generations()
    generated = {
        name: cluster.get_json("secret", name, namespace=namespace)["data"]
        for name in ("stalk-redis", "stalk-flower-auth")
    }
    local_cluster.helm(
        "upgrade",
        "stalk",
        str(CHART),
        f"--namespace={namespace}",
        *values,
        "--set",
        "taskQueues[0].scaling.maxReplicas=3",
        "--set",
        "beat.schedule.tick.every=2",
    )
    rolled = {name for name, generation in generations().items() if generation != before[name]}
    assert rolled == {"Deployment/stalk-beat"}, (
        f"only what changed rolls: the schedule changed, so only beat; rolled {rolled}"
    )
    for name, data in generated.items():
        assert cluster.get_json("secret", name, namespace=namespace)["data"] == data, (
            f"{name}: a generated password must survive an upgrade"
        )
    assert set(before) >= {
        "Deployment/stalk-operator",
        "Deployment/stalk-flower",
        "Deployment/stalk-beat",
        "StatefulSet/stalk-redis",
    }
    spec = cluster.get_json("tq", "jobs", namespace=namespace)["spec"]
    assert spec["scaling"]["maxReplicas"] == 3

    # TaskQueues carry no finalizer: helm deletes them with the operator, and their
    # Deployments go by garbage collection.
    local_cluster.helm("uninstall", "stalk", f"--namespace={namespace}", "--wait", "--timeout=60s")

    def leftovers() -> list[str]:
        names = cluster.kubectl(
            "get", "all,tq,sa,role,rolebinding,kopfpeering", "-o", "name", namespace=namespace
        ).stdout.split()
        return [name for name in names if "stalk" in name or "jobs" in name]

    assert not cluster.get_json("tq", namespace=namespace)["items"]
    wait_for(lambda: not leftovers(), 60, "every object of the release to be gone")
    assert cluster.kubectl("get", "crd", "taskqueues.stalk.dev").returncode == 0, (
        "Helm keeps CRDs on uninstall, as it documents"
    )
