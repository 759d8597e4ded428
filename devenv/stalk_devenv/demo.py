"""The main job: Stalk autoscaling real Celery workers on a local control plane.

Starts the control plane, a password-protected Redis, the operator (as its own
ServiceAccount) and the process kubelet that runs worker pods as real Celery workers;
applies two TaskQueues; sends a burst of real tasks at mixed priorities; shows backlog,
in-flight work and replicas per TaskQueue as they change; and ends with a summary.
"""

from __future__ import annotations

import json
import os
import random
import secrets
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

from stalk_devenv.controlplane import ControlPlane, find_binaries
from stalk_devenv.kubelet import ProcessKubelet
from stalk_devenv.redis import RedisServer
from stalk_devenv.stack import CRDS, WORKER_LABELS, OperatorProcess, grant_operator

NAMESPACE = "demo"
POOLS = {
    # name: (queue, task seconds, tasks in the burst)
    "thumbnails": ("file_processing", 2.0, 60),
    "reports": ("reports", 4.0, 24),
}


def taskqueue(name: str, queue: str) -> dict[str, Any]:
    return {
        "apiVersion": "stalk.dev/v1alpha1",
        "kind": "TaskQueue",
        "metadata": {"name": name, "namespace": NAMESPACE},
        "spec": {
            "queues": [queue],
            "worker": {"concurrency": 2, "taskTimeLimitSeconds": 60},
            "scaling": {
                "minReplicas": 0,
                "maxReplicas": 8,
                "scaleDown": {"stabilizationWindowSeconds": 10, "stepIntervalSeconds": 5},
            },
        },
    }


def say(text: str) -> None:
    print(text, flush=True)


@contextmanager
def stack(workdir: Path) -> Iterator[tuple[ControlPlane, RedisServer, ProcessKubelet]]:
    with ExitStack() as cleanup:
        say(
            "starting the control plane (etcd, kube-apiserver, controller-manager, "
            "scheduler, KWOK) ..."
        )
        cluster = ControlPlane(workdir / "cluster", bin_dir=find_binaries(), crds=CRDS).start()
        cleanup.callback(cluster.stop)
        password = secrets.token_urlsafe(16)
        redis = RedisServer(workdir / "redis", password=password).start()
        cleanup.callback(redis.stop)
        say(f"Redis with auth at {redis.host}:{redis.port}")
        cluster.kubectl("create", "namespace", NAMESPACE)
        cluster.kubectl(
            "create",
            "secret",
            "generic",
            "redis",
            f"--from-literal=password={password}",
            f"--namespace={NAMESPACE}",
        )
        grant_operator(cluster, NAMESPACE)
        operator = OperatorProcess(
            cluster,
            NAMESPACE,
            workdir,
            {
                "STALK_DEFAULT_BROKER_URL": redis.url,
                "STALK_DEFAULT_REDIS_PASSWORD": password,
                "STALK_DEFAULT_PASSWORD_SECRET": "redis:password",
                "STALK_STATUS_INTERVAL_SECONDS": "1",  # a livelier table than the default 5 s
            },
        ).start()
        cleanup.callback(operator.stop)
        say("operator running as ServiceAccount demo/stalk-operator")
        kubelet = ProcessKubelet(
            cluster, workdir / "kubelet", labels=WORKER_LABELS, namespace=NAMESPACE
        ).start()
        cleanup.callback(kubelet.stop)
        yield cluster, redis, kubelet


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
            }
        )
    return rows


def run(workdir: Path) -> int:
    with stack(workdir) as (cluster, redis, kubelet):
        env = {"STALK_BROKER_URL": redis.url, "STALK_REDIS_PASSWORD": redis.password or ""}
        os.environ.update(env)
        from stalk_worker.app import create_app

        app = create_app()
        for name, (queue, _, _) in POOLS.items():
            cluster.kubectl("apply", "-f", "-", input_text=json.dumps(taskqueue(name, queue)))
        say("TaskQueues applied: " + ", ".join(POOLS) + " (minReplicas 0: no pods yet)")
        time.sleep(3)
        results = []
        burst_at = time.monotonic()
        for name, (queue, seconds, count) in POOLS.items():
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
        say(f"{'time':>5}  " + "  ".join(f"{n:>34}" for n in POOLS))
        say(f"{'':>5}  " + "  ".join(f"{'backlog in-flight desired ready':>34}" for _ in POOLS))
        peak = {n: 0 for n in POOLS}
        first_scale: dict[str, float] = {}
        while True:
            rows = {r["name"]: r for r in table(cluster)}
            elapsed = time.monotonic() - burst_at
            cells = []
            for name in POOLS:
                row = rows.get(name, {"backlog": 0, "in_flight": 0, "desired": 0, "ready": 0})
                peak[name] = max(peak[name], row["desired"])
                if row["desired"] > 0 and name not in first_scale:
                    first_scale[name] = elapsed
                cells.append(
                    f"{row['backlog']:>8} {row['in_flight']:>9} "
                    f"{row['desired']:>7} {row['ready']:>5}".rjust(34)
                )
            say(f"{elapsed:>4.0f}s  " + "  ".join(cells))
            done = sum(1 for r in results if r.ready())
            if done == sent and all(rows.get(n, {}).get("desired", 1) == 0 for n in POOLS):
                break
            if elapsed > 300:
                say("giving up after 300 s")
                return 1
            time.sleep(1)
        failed = [r for r in results if not r.successful()]
        hosts = {r.result["hostname"] for r in results if r.successful()}
        killed = [p for p in kubelet.finished if p.exit_codes.get("worker") not in (0, None)]
        events = cluster.kubectl(
            "get",
            "events",
            f"--namespace={NAMESPACE}",
            "--field-selector",
            "involvedObject.kind=TaskQueue",
            "-o",
            "json",
        )
        scalings = [
            e for e in json.loads(events)["items"] if e["reason"] in ("ScaledUp", "ScaledDown")
        ]
        say("")
        say("summary")
        say(
            f"  tasks: {sent} sent, {sent - len(failed)} succeeded, {len(failed)} failed, "
            f"run by {len(hosts)} worker pods"
        )
        for name in POOLS:
            say(
                f"  {name}: scaled up within {first_scale.get(name, float('nan')):.1f}s of the "
                "burst (as this table, read every second, saw it), "
                f"peak {peak[name]} replicas, back to 0 at the end"
            )
        say(f"  scale events: {len(scalings)}; worker pods killed mid-task: {len(killed)}")
        say(f"  everything ran for real: logs under {workdir}")
        return 0 if not failed and not killed else 1


def main() -> int:
    workdir = Path(tempfile.mkdtemp(prefix="stalk-demo-"))
    try:
        return run(workdir)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
