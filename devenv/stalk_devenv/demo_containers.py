"""The main job in real containers: the chart installed with helm and its defaults on a
real node (stalk_devenv.real_cluster), so Redis is the chart's own StatefulSet with its
Sentinels, and the operator, beat, Flower and every worker run in containers of the
images built from the Dockerfiles. The example TaskQueues, `helm test`, a burst sent by
producer pods inside the cluster, the live table, and the same summary as the process
mode (stalk_devenv.demo).
"""

from __future__ import annotations

import base64
import json
import time
from pathlib import Path
from typing import Any

from stalk_devenv import audit, images, producer
from stalk_devenv.controlplane import ControlPlane
from stalk_devenv.demo import (
    BURST,
    CHART,
    NAMESPACE,
    RELEASE,
    Timeline,
    apply_examples,
    minimum_replicas,
    plot_timeline,
    say,
    say_audit,
    say_scaling,
    scale_events,
    watch_burst,
)
from stalk_devenv.real_cluster import RealCluster, chart_values
from stalk_devenv.stack import CRDS


def get(cluster: ControlPlane, *args: str) -> Any:
    return json.loads(cluster.kubectl("get", *args, "-o", "json", f"--namespace={NAMESPACE}"))


def start_producer(cluster: ControlPlane, name: str, args: list[str]) -> None:
    """A pod of the worker image that sends tasks from inside the cluster."""
    env = producer.broker_env(get(cluster, "deployment", f"{RELEASE}-beat"))
    items = producer.manifests(name, NAMESPACE, images.WORKER_IMAGE, env, args)
    manifest = {"apiVersion": "v1", "kind": "List", "items": items}
    cluster.kubectl("apply", "-f", "-", input_text=json.dumps(manifest))


def producer_summaries(cluster: ControlPlane) -> dict[str, dict[str, Any]] | None:
    """Each producer's summary once every one has finished, else ``None``."""
    pods = get(cluster, "pods", "-l", producer.PRODUCER_LABEL)["items"]
    if not pods or any(p["status"].get("phase") not in ("Succeeded", "Failed") for p in pods):
        return None
    summaries = {}
    for pod in pods:
        name = pod["metadata"]["name"]
        log = cluster.kubectl("logs", name, f"--namespace={NAMESPACE}", check=False)
        summaries[name] = producer.summary(log) or {"confirmed": 0, "lost": ["no summary"]}
    return summaries


def run(workdir: Path) -> int:
    say("mode: containers (containerd, runc, a kubelet, kube-proxy and CoreDNS on a node of")
    say("      this machine; images built from the Dockerfiles, no registry)")
    started = time.monotonic()
    real = RealCluster(workdir, api_extensions=CRDS)
    real.start()
    try:
        assert real.control_plane is not None
        cluster = real.control_plane
        say(f"control plane and real node up in {time.monotonic() - started:.0f}s")
        return _demo(cluster, workdir)
    finally:
        real.stop()


def _demo(cluster: ControlPlane, workdir: Path) -> int:
    cluster.kubectl("create", "namespace", NAMESPACE)
    say("helm install with the chart's defaults (Redis StatefulSet with Sentinels) ...")
    installed_at = time.monotonic()
    cluster.helm(
        "install",
        RELEASE,
        str(CHART),
        f"--namespace={NAMESPACE}",
        "--wait",
        "--timeout=5m",
        *chart_values(),
        "--set=helmTest.queue=email",
        "--set=operator.extraEnv[0].name=STALK_STATUS_INTERVAL_SECONDS",
        "--set-string=operator.extraEnv[0].value=1",
    )
    pods = get(cluster, "pods")["items"]
    objects = cluster.kubectl(
        "get", "all,secret,configmap,sa,role,rolebinding", "-o", "name", f"--namespace={NAMESPACE}"
    ).split()
    say(
        f"release {RELEASE}: {len(objects)} objects, {len(pods)} pods Running in containers "
        f"{time.monotonic() - installed_at:.0f}s after helm install"
    )
    apply_examples(cluster)
    tested_at = time.monotonic()
    cluster.helm("test", RELEASE, f"--namespace={NAMESPACE}", "--timeout=180s")
    say(
        f"helm test: a task went through the broker to a worker and back in "
        f"{time.monotonic() - tested_at:.0f}s (to the emails pool)"
    )
    minimum = minimum_replicas(cluster)
    burst_at = time.monotonic()
    for name, (queue, seconds, count) in BURST.items():
        args = [f"--queue={queue}", f"--count={count}", f"--seconds={seconds}", "--priorities"]
        start_producer(cluster, f"burst-{name}", args)
    sent = sum(count for _, _, count in BURST.values())
    say(f"{sent} tasks at priorities 0-9 sent from producer pods inside the cluster")
    timeline: Timeline = []
    watched = watch_burst(
        cluster, minimum, burst_at, lambda: producer_summaries(cluster) is not None, timeline
    )
    if watched is None:
        return 1
    peak, first_scale = watched
    summaries = producer_summaries(cluster) or {}
    confirmed = sum(s["confirmed"] for s in summaries.values())
    lost = sum(len(s["lost"]) for s in summaries.values())
    say("")
    say("summary")
    say(f"  installed with helm: {len(objects)} objects; helm test passed")
    say(f"  tasks: {confirmed} sent, {confirmed - lost} succeeded, {lost} failed")
    say_scaling(peak, first_scale, minimum)
    restarts = {
        p["metadata"]["name"]: sum(c["restartCount"] for c in p["status"]["containerStatuses"])
        for p in get(cluster, "pods")["items"]
        if p["status"].get("containerStatuses")
    }
    say(f"  scale events: {scale_events(cluster)}; container restarts: {sum(restarts.values())}")
    waited = unschedulable_pods(cluster)
    if waited:
        cpus = get(cluster, "node")["items"][0]["status"]["allocatable"]["cpu"]
        say(
            f"  {waited} worker pods waited for room on the node (FailedScheduling: the node "
            f"has {cpus} CPUs; the example `files` TaskQueue asks 1 CPU per worker)"
        )
    leaked, read = secret_leaks(cluster, workdir)
    say_audit(leaked, read)
    say(f"  the run as a picture: {plot_timeline(timeline, workdir / 'demo.png')}")
    return 0 if confirmed == sent and not lost and not leaked else 1


def unschedulable_pods(cluster: ControlPlane) -> int:
    """Pods the scheduler found no room for at some point: the cluster, not Stalk, capped
    those replicas."""
    events = get(cluster, "events", "--field-selector", "reason=FailedScheduling")["items"]
    return len({e["involvedObject"]["name"] for e in events})


def secret_leaks(cluster: ControlPlane, workdir: Path) -> tuple[list[str], int]:
    """Every place the release's passwords show up: every container's log (through the
    kubelet), the node's own logs, TaskQueue statuses and Events."""

    def secret(name: str, key: str) -> str:
        data = get(cluster, "secret", name)["data"]
        return base64.b64decode(data[key]).decode()

    passwords = {
        "the Redis password": secret(f"{RELEASE}-redis", "redis-password"),
        "the Flower password": secret(f"{RELEASE}-flower-auth", "password"),
    }
    logs = []
    for pod in get(cluster, "pods")["items"]:
        name = pod["metadata"]["name"]
        text = cluster.kubectl(
            "logs", name, "--all-containers", f"--namespace={NAMESPACE}", check=False
        )
        logs.append((f"pod {name}", text))
    logs += [
        (str(path.relative_to(workdir)), path.read_text(errors="replace"))
        for path in workdir.rglob("*.log")
    ]
    shown = [
        (what, cluster.kubectl("get", kind, "-o", "json", f"--namespace={NAMESPACE}"))
        for what, kind in (("TaskQueue statuses", "tq"), ("Events", "events"))
    ]
    return audit.leaks(passwords, [*logs, *shown]), len(logs)
