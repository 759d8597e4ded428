"""``helm install`` of the chart, with its defaults, on a real node: the bundled Redis
StatefulSet with its Sentinels finding each other through cluster DNS, the operator, beat
and Flower in containers, and worker pods that autoscale. Only the image names differ
from the defaults (nothing can be pulled here; the images are built from the
repository's Dockerfiles)."""

from __future__ import annotations

import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import pytest
from http_probe import http_status
from kube import Cluster, PodStages, ReplicaWatch, wait_for
from stalk_devenv import images, producer
from stalk_devenv.controlplane import REPO_ROOT
from stalk_devenv.real_cluster import RealCluster, chart_values

pytestmark = [pytest.mark.e2e, pytest.mark.realnode]

CHART = REPO_ROOT / "charts" / "stalk"
NAMESPACE = "stalk"


def helm(kube: Cluster, *args: str) -> str:
    assert kube.control_plane is not None
    return kube.control_plane.helm(*args)


@pytest.fixture(scope="module")
def release(real_kube: Cluster) -> Iterator[str]:
    real_kube.kubectl("create", "namespace", NAMESPACE)
    started = time.monotonic()
    helm(
        real_kube,
        "install",
        "stalk",
        str(CHART),
        f"--namespace={NAMESPACE}",
        *chart_values(),
        "--set=taskQueues[0].name=jobs",
        "--set=taskQueues[0].queues={jobs}",
        "--set=taskQueues[0].scaling.maxReplicas=4",
        "--set=helmTest.queue=jobs",
        "--wait",
        "--timeout=5m",
    )
    print(f"\nhelm install --wait on the real node: {time.monotonic() - started:.1f}s")
    yield NAMESPACE
    helm(real_kube, "uninstall", "stalk", f"--namespace={NAMESPACE}", "--wait", "--timeout=2m")


def pods(kube: Cluster, selector: str) -> list[dict[str, Any]]:
    return list(kube.get_json("pods", "-l", selector, namespace=NAMESPACE)["items"])


def component_pod(kube: Cluster, component: str) -> dict[str, Any]:
    found = pods(kube, f"app.kubernetes.io/component={component}")
    assert len(found) == 1, f"one {component} pod: {[p['metadata']['name'] for p in found]}"
    return found[0]


def redis_cli(kube: Cluster, pod: str, container: str, *command: str) -> str:
    """redis-cli inside a Redis pod, with the password from that container's own env."""
    port = "26379" if container == "sentinel" else "6379"
    script = f'REDISCLI_AUTH="$REDIS_PASSWORD" redis-cli --no-auth-warning -p {port} "$@"'
    try:
        result = kube.kubectl(
            "exec",
            pod,
            "-c",
            container,
            "--",
            "sh",
            "-c",
            script,
            "redis-cli",
            *command,
            namespace=NAMESPACE,
            check=False,
            timeout=15,
        )
    except subprocess.TimeoutExpired:  # the pod is going away
        return ""
    return result.stdout.strip()


def master_name(kube: Cluster, asking: str) -> str:
    """The master's hostname, as the Sentinel in pod ``asking`` reports it."""
    reply = redis_cli(kube, asking, "sentinel", "SENTINEL", "get-master-addr-by-name", "mymaster")
    return reply.splitlines()[0] if reply else ""


def produce(kube: Cluster, name: str, *args: str) -> None:
    env = producer.broker_env(kube.get_json("deployment", "stalk-beat", namespace=NAMESPACE))
    kube.apply(producer.manifests(name, NAMESPACE, images.WORKER_IMAGE, env, list(args)))


def produced(kube: Cluster, name: str, timeout: float) -> dict[str, Any]:
    phase, log = kube.finish_pod(name, NAMESPACE, timeout)
    summary = producer.summary(log)
    assert phase == "Succeeded" and summary is not None and summary["lost"] == [], log[-2000:]
    return summary


def test_the_chart_runs_in_real_containers(real_kube: Cluster, release: str):
    every = pods(real_kube, "app.kubernetes.io/instance=stalk")
    assert {p["status"]["phase"] for p in every} == {"Running"}
    for pod in every:
        for status in pod["status"]["containerStatuses"]:
            assert status["containerID"].startswith("containerd://"), pod["metadata"]["name"]
    restarts = {
        p["metadata"]["name"]: sum(s["restartCount"] for s in p["status"]["containerStatuses"])
        for p in every
    }
    assert set(restarts.values()) == {0}, f"a fresh install starts without restarts: {restarts}"
    claims = real_kube.get_json("pvc", namespace=NAMESPACE)["items"]
    assert sorted(c["status"]["phase"] for c in claims) == ["Bound"] * 3

    # The Sentinels agree on a master named by its stable DNS name, with two replicas.
    redis = sorted(
        p["metadata"]["name"] for p in pods(real_kube, "app.kubernetes.io/component=redis")
    )
    masters = {master_name(real_kube, pod) for pod in redis}
    assert len(masters) == 1 and masters.pop().endswith(".svc.cluster.local")
    replication = redis_cli(real_kube, redis[0], "redis", "INFO", "replication")
    role = "master" if "role:master" in replication else "replica"
    if role == "master":
        assert "connected_slaves:2" in replication

    # The operator image serves its probes and metrics; Flower asks for its password.
    operator_ip = component_pod(real_kube, "operator")["status"]["podIP"]
    assert http_status(f"http://{operator_ip}:8081/healthz") == 200
    with urllib.request.urlopen(f"http://{operator_ip}:8080/metrics", timeout=5) as reply:
        assert b"stalk_taskqueue_desired_replicas{" in reply.read()
    flower_ip = component_pod(real_kube, "flower")["status"]["podIP"]
    assert http_status(f"http://{flower_ip}:5555/") == 401


def test_helm_test_passes(real_kube: Cluster, release: str):
    tested = helm(real_kube, "test", "stalk", f"--namespace={NAMESPACE}", "--timeout=2m")
    assert "Phase:          Succeeded" in tested, tested


def test_worker_containers_autoscale_on_a_burst(real_kube: Cluster, release: str):
    watch = ReplicaWatch(real_kube.kubeconfig, NAMESPACE, "jobs")
    produce(real_kube, "burst", "--queue=jobs", "--count=40", "--seconds=2")
    summary = produced(real_kube, "burst", timeout=240)
    print(
        f"\n40 x 2 s tasks: all done {summary['finished'] - summary['started']:.1f}s after the "
        f"first send, replicas seen {sorted(set(watch.values))}"
    )
    assert max(watch.values) >= 3, f"the burst scaled the workers out: {watch.values}"
    running = pods(real_kube, "app.kubernetes.io/managed-by=stalk-operator")
    assert all(
        s["containerID"].startswith("containerd://")
        for p in running
        for s in p["status"].get("containerStatuses", [])
    )


@pytest.mark.timeout(600)
def test_redis_master_pod_deleted_under_a_steady_flow(real_kube: Cluster, release: str):
    """The Sentinels fail over, the StatefulSet brings the pod back as a replica, no
    confirmed task is lost, and the operator goes on scaling from the new master. The
    producer is Stalk's own app as a client: before its sockets had a timeout, it hung
    for good on a connection to the deleted pod's address."""
    redis = sorted(
        p["metadata"]["name"] for p in pods(real_kube, "app.kubernetes.io/component=redis")
    )
    old_master = master_name(real_kube, redis[0])
    deleted = old_master.split(".")[0]
    survivor = next(pod for pod in redis if pod != deleted)
    real_kube.apply(
        {
            "apiVersion": "stalk.dev/v1alpha1",
            "kind": "TaskQueue",
            "metadata": {"name": "late", "namespace": NAMESPACE},
            "spec": {"queues": ["late"], "scaling": {"minReplicas": 0, "maxReplicas": 2}},
        }
    )
    late = ReplicaWatch(real_kube.kubeconfig, NAMESPACE, "late")
    produce(real_kube, "flow", "--queue=jobs", "--count=150", "--rate=5", "--seconds=0.2")
    wait_for(
        lambda: (
            real_kube.get_json("pod", "flow", namespace=NAMESPACE)["status"].get("phase")
            == "Running"
        ),
        60,
        "the producer to start",
    )
    time.sleep(8)  # the flow is steady

    deleted_at = time.monotonic()
    real_kube.kubectl("delete", "pod", deleted, "--wait=false", namespace=NAMESPACE)
    wait_for(
        lambda: master_name(real_kube, survivor) not in ("", old_master),
        90,
        "the Sentinels to promote a replica",
        interval=0.2,
    )
    switch = time.monotonic() - deleted_at
    summary = produced(real_kube, "flow", timeout=300)

    def back_as_replica() -> bool:
        pod = real_kube.get_json("pod", deleted, namespace=NAMESPACE)
        statuses = pod.get("status", {}).get("containerStatuses", [])
        ready = bool(statuses) and all(s["ready"] for s in statuses)
        return ready and "role:slave" in redis_cli(
            real_kube, deleted, "redis", "INFO", "replication"
        )

    wait_for(back_as_replica, 120, f"{deleted} to come back as a replica", interval=1)
    back = time.monotonic() - deleted_at

    # Tasks sent after the failover start workers for a TaskQueue at zero.
    produce(real_kube, "after", "--queue=late", "--count=6", "--seconds=1")
    produced(real_kube, "after", timeout=240)
    assert max(late.values) >= 1, f"the operator scaled late up: {late.values}"
    sending = summary["sent"] - summary["started"]
    print(
        f"\nmaster pod {deleted} deleted under 5 tasks/s: new master in {switch:.1f}s, "
        f"150 sends took {sending:.0f}s (30 s without a failover), "
        f"the pod back as a replica in {back:.1f}s; {summary['confirmed']} tasks confirmed, "
        f"{summary['failed_publishes']} publishes retried, 0 lost"
    )


def scale_down_under_load(kube: Cluster, name: str) -> dict[str, Any]:
    """Four workers (concurrency 1, 3 s grace): two take 12 s tasks, two take 1 s tasks and
    go idle, then the pool may shrink to zero. Returns what the user would see: tasks
    that did not finish, worker containers killed mid-task, and the replicas over time."""
    kube.apply(
        {
            "apiVersion": "stalk.dev/v1alpha1",
            "kind": "TaskQueue",
            "metadata": {"name": name, "namespace": NAMESPACE},
            "spec": {
                "queues": [name],
                # A grace period shorter than the long tasks: a busy worker chosen as a
                # victim is killed mid-task, so every wrong choice shows.
                "worker": {
                    "concurrency": 1,
                    "taskTimeLimitSeconds": 60,
                    "terminationGracePeriodSeconds": 3,
                },
                "scaling": {
                    "minReplicas": 4,
                    "maxReplicas": 4,
                    "targetTasksPerReplica": 1,
                    "scaleDown": {"stabilizationWindowSeconds": 3, "stepIntervalSeconds": 0},
                },
            },
        }
    )
    replicas = ReplicaWatch(kube.kubeconfig, NAMESPACE, name)
    workers = PodStages(kube.kubeconfig, NAMESPACE, {"stalk.dev/taskqueue": name})

    def status() -> dict[str, Any]:
        return dict(kube.get_json("tq", name, namespace=NAMESPACE).get("status", {}))

    wait_for(lambda: status().get("readyReplicas") == 4, 120, f"4 {name} workers Ready")
    # Each worker holds one task at most (concurrency 1, prefetch 1), so the four tasks
    # sent at once go to four different workers.
    produce(kube, name, f"--queue={name}", "--count=4", "--seconds=12,12,1,1", "--timeout=30")
    # The list empty while at least the two long tasks run: all four were taken.
    seen: list[tuple[Any, Any]] = []

    def all_taken() -> bool:
        now = status()
        seen.append((now.get("backlog"), now.get("inFlight")))
        return now.get("backlog") == 0 and now.get("inFlight", 0) >= 2

    try:
        wait_for(all_taken, 60, "every task taken", interval=0.2)
    except TimeoutError:
        log = kube.kubectl("logs", name, namespace=NAMESPACE, check=False)
        raise AssertionError(f"(backlog, inFlight) seen: {seen[-20:]}; producer: {log}") from None
    kube.kubectl(
        "patch",
        "tq",
        name,
        "--type=merge",
        "-p",
        '{"spec":{"scaling":{"minReplicas":0}}}',
        namespace=NAMESPACE,
    )
    _, log = kube.finish_pod(name, NAMESPACE, 180)
    summary = producer.summary(log)
    assert summary is not None, log[-2000:]
    wait_for(lambda: replicas.values and replicas.values[-1] == 0, 120, f"{name} at zero")
    wait_for(lambda: not pods_of(kube, name), 120, f"{name}'s pods gone")
    killed = [pod for pod, codes in workers.exit_codes.items() if codes.get("worker", 0) != 0]
    kube.kubectl("delete", "tq", name, namespace=NAMESPACE)
    return {
        "unfinished": len(summary["lost"]),
        "killed": len(killed),
        "replicas": replicas.values,
        "exit_codes": workers.exit_codes,
    }


@pytest.mark.timeout(900)
def test_scale_down_on_the_real_kubelet_never_interrupts_a_task(real_kube: Cluster, release: str):
    """SIGTERM from the real kubelet, Celery's warm shutdown and the operator's
    pod-deletion-cost: the idle workers go and the busy ones finish. The same run with
    the operator's deletion costs switched off shows what they save (the ReplicaSet then
    picks its victims by its own ranking, busy or not)."""
    with_costs = scale_down_under_load(real_kube, "grace")

    def operator_env(*assignment: str) -> None:
        real_kube.kubectl(
            "set", "env", "deployment/stalk-operator", *assignment, namespace=NAMESPACE
        )
        real_kube.kubectl(
            "rollout", "status", "deployment/stalk-operator", "--timeout=120s", namespace=NAMESPACE
        )

    operator_env("STALK_POD_DELETION_COST=false")
    try:
        without_costs = scale_down_under_load(real_kube, "nocost")
    finally:
        operator_env("STALK_POD_DELETION_COST-")
    print(
        "\nscale-down on the real kubelet, 2 of 4 workers busy with 12 s tasks, 3 s grace:\n"
        f"  with pod-deletion-cost:    {with_costs['killed']} workers killed mid-task, "
        f"{with_costs['unfinished']} tasks unfinished, replicas {with_costs['replicas']}\n"
        f"  without (ReplicaSet picks): {without_costs['killed']} workers killed mid-task, "
        f"{without_costs['unfinished']} tasks unfinished, replicas {without_costs['replicas']}"
    )
    assert with_costs["unfinished"] == 0 and with_costs["killed"] == 0, with_costs
    assert with_costs["replicas"][-1] == 0, "idle at last, the pool scales to zero"
    assert 2 in with_costs["replicas"], "the two busy workers held the pool while they ran"


PROBE = """
import socket, sys, time
def opens(host, port):
    # The enforcer learns a new pod's address from the API a moment after the pod
    # starts: a port counts as closed only if it stays closed for 5 s.
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            socket.create_connection((host, int(port)), timeout=2).close()
            return True
        except OSError:
            time.sleep(0.5)
    return False
for target in sys.argv[1:]:
    print(target, "open" if opens(*target.rsplit(":", 1)) else "closed")
"""


def reachable(
    kube: Cluster, name: str, namespace: str, labels: dict[str, str], targets: dict[str, str]
) -> dict[str, bool]:
    """Which of ``targets`` (what: address:port) a pod with ``labels`` in ``namespace``
    can open a TCP connection to."""
    _, log = kube.run_pod(
        name,
        images.WORKER_IMAGE,
        ["python", "-c", PROBE, *targets.values()],
        namespace=namespace,
        labels=labels,
    )
    states = dict(line.split() for line in log.splitlines() if line.endswith(("open", "closed")))
    assert set(states) == set(targets.values()), log
    return {what: states[target] == "open" for what, target in targets.items()}


@pytest.mark.timeout(600)
def test_network_policies_let_exactly_the_intended_traffic_through(
    real_kube: Cluster, release: str
):
    """With kube-router enforcing them: Redis and Sentinel answer this release, its
    workers and the applications named as clients, and nobody else, not even a pod of
    another namespace wearing a worker's label; Flower answers its named clients; and
    Prometheus (as the Prometheus Operator labels its pods) still scrapes the operator,
    Flower and beat. Tasks still flow and `helm test` passes."""
    redis_ip = component_ip(real_kube, "redis")
    targets = {
        "redis": f"{redis_ip}:6379",
        "sentinel": f"{redis_ip}:26379",
        "operator metrics": f"{component_ip(real_kube, 'operator')}:8080",
        "flower": f"{component_ip(real_kube, 'flower')}:5555",
        "beat metrics": f"{component_ip(real_kube, 'beat')}:8801",
    }
    worker_label = {"app.kubernetes.io/managed-by": "stalk-operator"}
    prometheus_label = {"app.kubernetes.io/name": "prometheus"}
    real_kube.kubectl("create", "namespace", "outsider")
    try:
        assert all(reachable(real_kube, "probe-open", "outsider", {}, targets).values()), (
            "without policies every port is open: the probe sees an open port"
        )
        upgrade(
            real_kube,
            "--set=networkPolicy.enabled=true",
            '--set-json=networkPolicy.extraRedisClients=[{"podSelector":{"matchLabels":'
            f'{{"{producer.PRODUCER_LABEL}":"true"}}}}}}]',
            '--set-json=networkPolicy.flowerClients=[{"namespaceSelector":{"matchLabels":'
            '{"kubernetes.io/metadata.name":"ingress"}}}]',
        )
        seen = {
            "outsider": reachable(real_kube, "probe-outsider", "outsider", {}, targets),
            "forged worker label": reachable(
                real_kube, "probe-forged", "outsider", worker_label, targets
            ),
            "prometheus": reachable(
                real_kube, "probe-prometheus", "outsider", prometheus_label, targets
            ),
            "worker": reachable(real_kube, "probe-worker", NAMESPACE, worker_label, targets),
        }
        print(f"\nwith NetworkPolicies (reachable): {seen}")
        nothing = dict.fromkeys(targets, False)
        assert seen["outsider"] == nothing
        assert seen["forged worker label"] == nothing, "a label alone does not open Redis"
        assert seen["prometheus"] == {
            **nothing,
            "operator metrics": True,
            "flower": True,
            "beat metrics": True,
        }, "monitoring reaches the metrics, and Flower beside its own clients"
        assert seen["worker"]["redis"] and seen["worker"]["sentinel"]

        produce(real_kube, "policed", "--queue=jobs", "--count=8", "--seconds=0.5")
        produced(real_kube, "policed", timeout=180)
        tested = helm(real_kube, "test", "stalk", f"--namespace={NAMESPACE}", "--timeout=2m")
        assert "Phase:          Succeeded" in tested, tested
    finally:
        upgrade(
            real_kube,
            "--set=networkPolicy.enabled=false",
            "--set-json=networkPolicy.flowerClients=[]",
        )
        real_kube.kubectl("delete", "namespace", "outsider", "--wait=false")


def test_nothing_restarted_through_it_all(real_kube: Cluster, release: str):
    """After the burst, the failover, the scale-downs and the policy switch, no container
    of the release restarted: probes (beat's too) held, nothing crashed."""
    restarts = {
        f"{p['metadata']['name']}/{s['name']}": s["restartCount"]
        for p in pods(real_kube, "app.kubernetes.io/instance=stalk")
        for s in p["status"].get("containerStatuses", [])
    }
    assert restarts and set(restarts.values()) == {0}, restarts


def upgrade(kube: Cluster, *values: str) -> None:
    """``helm upgrade`` of the release with its values and ``values`` on top."""
    helm(
        kube,
        "upgrade",
        "stalk",
        str(CHART),
        f"--namespace={NAMESPACE}",
        "--reuse-values",
        *values,
        "--wait",
        "--timeout=3m",
    )


def component_ip(kube: Cluster, component: str) -> str:
    """The pod IP of a component (the first pod of it, for Redis)."""
    found = pods(kube, f"app.kubernetes.io/component={component}")
    return str(found[0]["status"]["podIP"])


@pytest.mark.bench
@pytest.mark.timeout(1200)
def test_bench_reaction_by_stage(real_cluster: RealCluster, real_kube: Cluster, release: str):
    """Backlog -> first task started by a new worker, from zero replicas, down to the
    container: when the operator decided, the pod was scheduled, the runtime made its
    sandbox, the agent's init container ended, the worker container started, Celery said
    ready, and the task started. p95 over TRIALS bursts of one task. The API's own view
    (container running, pod Ready) is printed beside: the kubelet reports it late."""
    trials = 10
    assert real_cluster.node is not None
    real_kube.apply(
        {
            "apiVersion": "stalk.dev/v1alpha1",
            "kind": "TaskQueue",
            "metadata": {"name": "react", "namespace": NAMESPACE},
            "spec": {
                "queues": ["react"],
                "scaling": {
                    "minReplicas": 0,
                    "maxReplicas": 1,
                    # The worker stays 5 s after its task: long enough to read its start
                    # from the runtime.
                    "scaleDown": {"stabilizationWindowSeconds": 5, "stepIntervalSeconds": 0},
                },
            },
        }
    )
    replicas = ReplicaWatch(real_kube.kubeconfig, NAMESPACE, "react")
    pods = PodStages(real_kube.kubeconfig, NAMESPACE, {"stalk.dev/taskqueue": "react"})
    rows: list[dict[str, float]] = []
    for trial in range(trials):
        wait_for(lambda: replicas.values and replicas.values[-1] == 0, 120, "react at zero")
        wait_for(lambda: not pods_of(real_kube, "react"), 120, "react's pods gone")
        known = set(pods.seen)
        produce(real_kube, f"react-{trial}", "--queue=react", "--count=1", "--seconds=0.5")
        summary = produced(real_kube, f"react-{trial}", timeout=180)
        sent = summary["started"]
        decided = next(t for t, r in replicas.wall_history if r == 1 and t >= sent)
        (new_pod,) = [name for name in pods.seen if name not in known]
        stages = pods.seen[new_pod]
        runtime = real_cluster.node.pod_start(NAMESPACE, new_pod)
        rows.append(
            {
                "decision": decided - sent,
                "scheduled": stages["scheduled"] - sent,
                "sandbox": runtime["sandbox"] - sent,
                "agent copied": runtime["stalk-agent finished"] - sent,
                "worker started": runtime["worker started"] - sent,
                "Celery ready": celery_ready(real_kube, new_pod) - sent,
                "task started": summary["task_started"][0] - sent,
                "API: running": stages["running"] - sent,
                "API: Ready": stages["ready"] - sent,
            }
        )

    def p95(values: list[float]) -> float:
        ordered = sorted(values)
        return ordered[min(len(ordered) - 1, round(0.95 * len(ordered)) - 1)]

    print(f"\nreaction from zero replicas on the real node, {trials} trials (s after the send):")
    for stage in rows[0]:
        values = [row[stage] for row in rows]
        print(f"  {stage:>14}: p50 {sorted(values)[len(values) // 2]:.2f}  p95 {p95(values):.2f}")


def celery_ready(kube: Cluster, pod: str) -> float:
    """When the worker's Celery said ``ready.``, by the kubelet's log timestamps."""
    log = kube.kubectl(
        "logs", pod, "-c", "worker", "--timestamps", namespace=NAMESPACE, check=False
    ).stdout
    line = next(line for line in log.splitlines() if line.rstrip().endswith(" ready."))
    return datetime.fromisoformat(line.split()[0]).timestamp()


def pods_of(kube: Cluster, taskqueue: str) -> list[dict[str, Any]]:
    return pods(kube, f"stalk.dev/taskqueue={taskqueue}")
