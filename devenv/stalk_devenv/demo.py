"""The main job: the Stalk chart, installed with helm, autoscaling real Celery workers.

Starts a local control plane and a password-protected redis-server; `helm install`s the
chart, whose operator, Flower and beat run as real processes through the process
kubelet; applies the example TaskQueues (manifests/examples); runs `helm test`; sends a
burst of real tasks at mixed priorities; shows backlog, in-flight work and replicas per
TaskQueue as they change; and ends with a summary of what ran.

``STALK_DEMO_SCALE_DOWN_WINDOW_SECONDS`` shortens the examples' scale-down windows (up
to 120 s) for a run that need not show them, such as CI's.

The chart's bundled Redis StatefulSet is off here: its pods find each other through
cluster DNS, which a local control plane has not got. The local redis-server stands in
as the chart's external broker; the bundled one's scripts are tested on real processes
in tests/integration/test_chart_redis.py.
"""

from __future__ import annotations

import base64
import json
import os
import random
import secrets
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from stalk_devenv import audit
from stalk_devenv.binaries import find_binaries
from stalk_devenv.controlplane import REPO_ROOT, ControlPlane
from stalk_devenv.kubelet import ProcessKubelet
from stalk_devenv.process import free_port, wait_until
from stalk_devenv.redis import RedisServer
from stalk_devenv.stack import CRDS, WORKER_LABELS

NAMESPACE = "stalk-demo"
RELEASE = "stalk"
CHART = REPO_ROOT / "charts" / "stalk"
EXAMPLES = REPO_ROOT / "manifests" / "examples" / "taskqueues.yaml"
RELEASE_LABELS = {"app.kubernetes.io/name": "stalk"}
BURST = {
    # TaskQueue of manifests/examples: (queue, task seconds, tasks in the burst)
    "emails": ("email", 1.0, 40),
    "files": ("file_processing", 3.0, 16),
    "batch": ("reports", 4.0, 12),
}
TIMEOUT_SECONDS = 420


def say(text: str) -> None:
    print(text, flush=True)


@dataclass
class Stack:
    cluster: ControlPlane
    redis: RedisServer
    workers: ProcessKubelet
    release: ProcessKubelet
    flower_port: int


def chart_values(redis: RedisServer, flower_port: int) -> list[str]:
    """The demo's `--set` flags: the local Redis as external broker, local ports."""
    extra_env = {
        # The operator runs as a local process: free ports, and a livelier status.
        "STALK_METRICS_PORT": str(free_port()),
        "STALK_HEALTH_PORT": str(free_port()),
        "STALK_STATUS_INTERVAL_SECONDS": "1",
    }
    flags = [
        f"broker.url={redis.url}",
        "broker.existingSecret=redis",
        "redis.enabled=false",
        "operator.clusterWide=false",
        f"flower.port={flower_port}",
        "helmTest.queue=email",
    ]
    args = [arg for flag in flags for arg in ("--set", flag)]
    for i, (name, value) in enumerate(extra_env.items()):
        args += ["--set", f"operator.extraEnv[{i}].name={name}"]
        args += ["--set-string", f"operator.extraEnv[{i}].value={value}"]
    return args


@contextmanager
def stack(workdir: Path) -> Iterator[Stack]:
    with ExitStack() as cleanup:
        say(
            "starting the control plane (etcd, kube-apiserver, controller-manager, "
            "scheduler, KWOK) ..."
        )
        cluster = ControlPlane(
            workdir / "cluster", bin_dir=find_binaries(), api_extensions=CRDS
        ).start()
        cleanup.callback(cluster.stop)
        password = secrets.token_urlsafe(16)
        redis = RedisServer(workdir / "redis", password=password).start()
        cleanup.callback(redis.stop)
        say(f"redis-server with auth at {redis.host}:{redis.port}")
        cluster.kubectl("create", "namespace", NAMESPACE)
        cluster.create_secret(NAMESPACE, "redis", password=password)
        kubelets = {
            name: ProcessKubelet(
                cluster, workdir / f"kubelet-{name}", labels=labels, namespace=NAMESPACE
            ).start()
            for name, labels in (("release", RELEASE_LABELS), ("workers", WORKER_LABELS))
        }
        for kubelet in kubelets.values():
            cleanup.callback(kubelet.stop)
        result = Stack(cluster, redis, kubelets["workers"], kubelets["release"], free_port())
        say("helm install (operator, Flower and beat run as real processes) ...")
        cluster.helm(
            "install",
            RELEASE,
            str(CHART),
            f"--namespace={NAMESPACE}",
            "--wait",
            "--timeout=120s",
            *chart_values(redis, result.flower_port),
        )
        yield result


def table(cluster: ControlPlane) -> list[dict[str, Any]]:
    items = json.loads(cluster.kubectl("get", "tq", "-o", "json", f"--namespace={NAMESPACE}"))[
        "items"
    ]
    rows = []
    for item in items:
        status = item.get("status", {})
        rows.append(
            {
                "name": item["metadata"]["name"],
                "backlog": status.get("backlog", 0),
                "in_flight": status.get("inFlight", 0),
                "desired": status.get("desiredReplicas", 0),
                "ready": status.get("readyReplicas", 0),
                "wait": status.get("oldestWaitSeconds", 0),
            }
        )
    return rows


Timeline = list[tuple[float, dict[str, dict[str, Any]]]]
"""Seconds after the burst, and each TaskQueue's row of :func:`table` then."""


def plot_timeline(timeline: Timeline, path: Path) -> Path:
    """Backlog, the oldest task's wait, in-flight and replicas of each TaskQueue over the
    run, as the TaskQueues' status said them: the demo's picture."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(4, 1, sharex=True, figsize=(10, 10))
    fields = (
        ("backlog", "backlog (tasks)"),
        ("wait", "oldest wait (s)"),
        ("in_flight", "in flight (tasks)"),
        ("desired", "replicas"),
    )
    times = [t for t, _ in timeline]
    for name in BURST:
        for axis, (field, _) in zip(axes, fields, strict=True):
            values = [rows.get(name, {}).get(field, 0) for _, rows in timeline]
            axis.step(times, values, where="post", label=name)
    for axis, (_, label) in zip(axes, fields, strict=True):
        axis.set_ylabel(label)
        axis.grid(alpha=0.3)
    axes[0].legend(loc="upper right", fontsize="small")
    axes[-1].set_xlabel("seconds since the burst")
    figure.suptitle("Stalk demo: the burst and the way down")
    figure.tight_layout()
    figure.savefig(path, dpi=90)
    plt.close(figure)
    return path


def watch_burst(
    cluster: ControlPlane,
    minimum: dict[str, int],
    burst_at: float,
    done: Callable[[], bool],
    timeline: Timeline | None = None,
) -> tuple[dict[str, int], dict[str, float]] | None:
    """Print backlog, in-flight and replicas per TaskQueue as they change, until every
    task is ``done`` and every TaskQueue is back to its minimum; the peak replicas and
    when each first scaled up, or ``None`` on a timeout. Every reading goes to
    ``timeline``."""
    say(f"{'time':>5}  " + "  ".join(f"{n:>30}" for n in BURST))
    say(f"{'':>5}  " + "  ".join(f"{'backlog in-flight want ready':>30}" for _ in BURST))
    peak = dict.fromkeys(BURST, 0)
    first_scale: dict[str, float] = {}
    last_line, last_print = "", 0.0
    while True:
        rows = {r["name"]: r for r in table(cluster)}
        elapsed = time.monotonic() - burst_at
        if timeline is not None:
            timeline.append((elapsed, rows))
        cells = []
        for name in BURST:
            row = rows.get(name, {"backlog": 0, "in_flight": 0, "desired": 0, "ready": 0})
            peak[name] = max(peak[name], row["desired"])
            if row["desired"] > minimum.get(name, 0) and name not in first_scale:
                first_scale[name] = elapsed
            cells.append(
                f"{row['backlog']:>8} {row['in_flight']:>9} "
                f"{row['desired']:>4} {row['ready']:>5}".rjust(30)
            )
        line = "  ".join(cells)
        # A line when something changed, or every 15 s while waiting out a window.
        if line != last_line or elapsed - last_print >= 15:
            say(f"{elapsed:>4.0f}s  {line}")
            last_line, last_print = line, elapsed
        if done() and all(rows.get(n, {}).get("desired", -1) == minimum.get(n, 0) for n in BURST):
            return peak, first_scale
        if elapsed > TIMEOUT_SECONDS:
            say(f"giving up after {TIMEOUT_SECONDS} s")
            return None
        time.sleep(1)


def apply_examples(cluster: ControlPlane) -> None:
    """The example TaskQueues, with their scale-down windows shortened if asked."""
    cluster.kubectl("apply", f"--namespace={NAMESPACE}", "-f", str(EXAMPLES))
    window = os.environ.get("STALK_DEMO_SCALE_DOWN_WINDOW_SECONDS")
    if window:
        patch = json.dumps(
            {"spec": {"scaling": {"scaleDown": {"stabilizationWindowSeconds": int(window)}}}}
        )
        for name in BURST:
            cluster.kubectl(
                "patch", "tq", name, "--type=merge", "-p", patch, f"--namespace={NAMESPACE}"
            )
    shortened = f" (scale-down windows {window} s)" if window else ""
    say("example TaskQueues applied: " + ", ".join(BURST) + shortened)


def minimum_replicas(cluster: ControlPlane) -> dict[str, int]:
    found = json.loads(cluster.kubectl("get", "tq", "-o", "json", f"--namespace={NAMESPACE}"))
    return {i["metadata"]["name"]: i["spec"]["scaling"]["minReplicas"] for i in found["items"]}


def scale_events(cluster: ControlPlane) -> int:
    events = cluster.kubectl(
        "get",
        "events",
        f"--namespace={NAMESPACE}",
        "--field-selector",
        "involvedObject.kind=TaskQueue",
        "-o",
        "json",
    )
    reasons = [e["reason"] for e in json.loads(events)["items"]]
    return sum(1 for reason in reasons if reason in ("ScaledUp", "ScaledDown"))


def say_audit(leaked: list[str], logs_read: int) -> None:
    found = ", ".join(leaked) if leaked else "none"
    say(
        "  Redis and Flower passwords in logs, TaskQueue statuses and Events: "
        f"{found} ({logs_read} logs read)"
    )


def say_scaling(
    peak: dict[str, int], first_scale: dict[str, float], minimum: dict[str, int]
) -> None:
    for name in BURST:
        say(
            f"  {name}: scaled up {first_scale.get(name, float('nan')):.1f}s after the "
            f"burst (as read every second), peak {peak[name]} replicas, "
            f"back to {minimum.get(name, 0)} at the end"
        )


def run(workdir: Path) -> int:
    say("mode: processes (the release's pods run as local processes; Redis on loopback)")
    with stack(workdir) as st:
        wait_until(
            lambda: len(st.release.running_pods()) >= 3,  # operator, Flower, beat
            60,
            "the release's pods to run",
            interval=0.5,
        )
        objects = st.cluster.kubectl(
            "get",
            "all,secret,configmap,sa,role,rolebinding",
            "-o",
            "name",
            f"--namespace={NAMESPACE}",
        ).split()
        say(f"release {RELEASE}: {len(objects)} objects; operator, Flower, beat running")
        say(
            f"Flower: http://127.0.0.1:{st.flower_port}/ (user admin, password in Secret "
            f"{RELEASE}-flower-auth)"
        )
        apply_examples(st.cluster)
        tested_at = time.monotonic()
        st.cluster.helm("test", RELEASE, f"--namespace={NAMESPACE}", "--timeout=180s")
        say(
            f"helm test: a task went through the broker to a worker and back in "
            f"{time.monotonic() - tested_at:.0f}s (to the emails pool)"
        )

        os.environ.update(
            {"STALK_BROKER_URL": st.redis.url, "STALK_REDIS_PASSWORD": st.redis.password or ""}
        )
        from stalk_worker.app import create_app

        app = create_app()
        minimum = minimum_replicas(st.cluster)
        results = []
        burst_at = time.monotonic()
        for name, (queue, seconds, count) in BURST.items():
            for i in range(count):
                results.append(
                    app.send_task(
                        "stalk_worker.tasks.canvas.sleep",
                        args=(seconds, f"{name}-{i}"),
                        queue=queue,
                        priority=random.randint(0, 9),
                    )
                )
        sent = len(results)
        say(f"sent {sent} tasks at priorities 0-9 (kombu spreads them over 4 lists per queue)")
        timeline: Timeline = []
        watched = watch_burst(
            st.cluster,
            minimum,
            burst_at,
            lambda: sum(1 for r in results if r.ready()) == sent,
            timeline,
        )
        if watched is None:
            return 1
        peak, first_scale = watched
        failed = [r for r in results if not r.successful()]
        hosts = {r.result["hostname"] for r in results if r.successful()}
        killed = [p for p in st.workers.finished if p.exit_codes.get("worker") not in (0, None)]
        say("")
        say("summary")
        say(f"  installed with helm: {len(objects)} objects; helm test passed")
        say(
            f"  tasks: {sent} sent, {sent - len(failed)} succeeded, {len(failed)} failed, "
            f"run by {len(hosts)} worker pods"
        )
        say_scaling(peak, first_scale, minimum)
        events = scale_events(st.cluster)
        say(f"  scale events: {events}; worker pods killed mid-task: {len(killed)}")
        leaked, read = secret_leaks(st, workdir)
        say_audit(leaked, read)
        say(f"  the run as a picture: {plot_timeline(timeline, workdir / 'demo.png')}")
        say(f"  everything ran for real: logs under {workdir}")
        return 0 if not failed and not killed and not leaked else 1


def secret_leaks(st: Stack, workdir: Path) -> tuple[list[str], int]:
    """Every place the run's passwords show up, and how many logs were read: the
    operator's, workers', beat's and Flower's (all of them files under ``workdir``)."""
    flower = json.loads(
        st.cluster.kubectl(
            "get", "secret", f"{RELEASE}-flower-auth", "-o", "json", f"--namespace={NAMESPACE}"
        )
    )["data"]
    passwords = {
        "the Redis password": st.redis.password or "",
        "the Flower password": base64.b64decode(flower["password"]).decode(),
    }
    shown = [
        (what, st.cluster.kubectl("get", kind, "-o", "json", f"--namespace={NAMESPACE}"))
        for what, kind in (("TaskQueue statuses", "tq"), ("Events", "events"))
    ]
    logs = [
        (str(path.relative_to(workdir)), path.read_text(errors="replace"))
        for path in workdir.rglob("*.log")
    ]
    return audit.leaks(passwords, [*logs, *shown]), len(logs)


def main(mode: Callable[[Path], int] = run) -> int:
    workdir = Path(tempfile.mkdtemp(prefix="stalk-demo-"))
    try:
        return mode(workdir)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
