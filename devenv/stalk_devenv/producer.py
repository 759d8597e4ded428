"""An application inside a real-node cluster: runs in a pod of the worker image with the
chart's broker settings (the file is mounted from a ConfigMap, see :func:`pod_files`),
sends ``stalk_worker.tasks.canvas.sleep`` tasks to a queue, and waits for every task
whose publish was confirmed to finish.

A publish that fails (the master is gone mid-failover) is retried with the same task id
until it is confirmed, as an application with retries would. The last line of the log is
a JSON summary: confirmed ids that never finished are ``lost``.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
import uuid
from pathlib import Path
from typing import Any

TASK = "stalk_worker.tasks.canvas.sleep"
PRODUCER_LABEL = "devenv.stalk.dev/producer"


def broker_env(beat_deployment: dict[str, Any]) -> list[dict[str, Any]]:
    """The chart's broker settings (``STALK_*``), as its beat Deployment has them."""
    env = beat_deployment["spec"]["template"]["spec"]["containers"][0]["env"]
    return [item for item in env if item["name"].startswith("STALK_")]


def manifests(
    name: str, namespace: str, image: str, env: list[dict[str, Any]], args: list[str]
) -> list[dict[str, Any]]:
    """A ConfigMap holding this script and a pod of ``image`` running it with ``args``,
    as restricted as the chart's own pods."""
    files = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": f"{name}-files", "namespace": namespace},
        "data": {"producer.py": Path(__file__).read_text()},
    }
    container = {
        "name": "producer",
        "image": image,
        "imagePullPolicy": "Never",
        "command": ["python", "/files/producer.py", *args],
        "env": env,
        "securityContext": {
            "readOnlyRootFilesystem": True,
            "allowPrivilegeEscalation": False,
            "capabilities": {"drop": ["ALL"]},
        },
        "volumeMounts": [
            {"name": "files", "mountPath": "/files"},
            {"name": "tmp", "mountPath": "/tmp"},
        ],
    }
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace, "labels": {PRODUCER_LABEL: "true"}},
        "spec": {
            "restartPolicy": "Never",
            "automountServiceAccountToken": False,
            "enableServiceLinks": False,
            "securityContext": {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}},
            "containers": [container],
            "volumes": [
                {"name": "files", "configMap": {"name": f"{name}-files"}},
                {"name": "tmp", "emptyDir": {}},
            ],
        },
    }
    return [files, pod]


def summary(log: str) -> dict[str, Any] | None:
    """The summary a producer's log ends with, if it got that far."""
    lines = log.strip().splitlines()
    try:
        return dict(json.loads(lines[-1])) if lines else None
    except ValueError:
        return None


def send(
    queue: str, count: int, rate: float, seconds: list[float], priorities: bool
) -> tuple[list[str], int]:
    from stalk_worker.app import app

    confirmed: list[str] = []
    failed_publishes = 0
    started = time.monotonic()
    for index in range(count):
        task_id = str(uuid.uuid4())
        while True:
            try:
                app.send_task(
                    TASK,
                    args=(seconds[index % len(seconds)], f"{queue}-{index}"),
                    queue=queue,
                    task_id=task_id,
                    priority=random.randint(0, 9) if priorities else None,
                )
                break
            except Exception as exc:  # the broker is failing over: retry, same id
                failed_publishes += 1
                print(f"publish failed, retrying: {type(exc).__name__}", flush=True)
                time.sleep(0.5)
        confirmed.append(task_id)
        if len(confirmed) % 25 == 0:
            print(f"{len(confirmed)} confirmed", flush=True)
        if rate > 0:
            time.sleep(max(0.0, started + (index + 1) / rate - time.monotonic()))
    return confirmed, failed_publishes


def wait(task_ids: list[str], timeout: float) -> tuple[list[str], list[float]]:
    """The ids that did not finish within ``timeout``, and when each finished one started
    on its worker. Reads each result's key rather than waiting on pub/sub: a subscription
    can be left on a master that became a replica."""
    from celery.states import READY_STATES
    from stalk_worker.app import app

    deadline = time.monotonic() + timeout
    pending = list(task_ids)
    started: list[float] = []
    while pending and time.monotonic() < deadline:
        try:
            metas = {task_id: app.backend.get_task_meta(task_id) for task_id in pending}
        except Exception as exc:  # the backend failing over: look again
            print(f"waiting: {type(exc).__name__}", flush=True)
            time.sleep(0.5)
            continue
        for meta in metas.values():
            result = meta.get("result")
            if meta["status"] in READY_STATES and isinstance(result, dict):
                started.append(float(result.get("started", 0.0)))
        pending = [task_id for task_id in pending if metas[task_id]["status"] not in READY_STATES]
        time.sleep(0.2)
    return pending, started


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--queue", required=True)
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--rate", type=float, default=0.0, help="tasks/s; 0: all at once")
    parser.add_argument(
        "--seconds",
        type=lambda text: [float(part) for part in text.split(",")],
        default=[1.0],
        help="each task's duration; a comma-separated list is taken in turn",
    )
    parser.add_argument("--timeout", type=float, default=300.0)
    parser.add_argument("--priorities", action="store_true", help="random priorities 0-9")
    args = parser.parse_args()
    started = time.time()
    confirmed, failed_publishes = send(
        args.queue, args.count, args.rate, args.seconds, args.priorities
    )
    sent = time.time()
    lost, task_started = wait(confirmed, args.timeout)
    summary = {
        "confirmed": len(confirmed),
        "failed_publishes": failed_publishes,
        "lost": lost,
        "task_started": task_started,
        "started": started,
        "sent": sent,
        "finished": time.time(),
    }
    print(json.dumps(summary), flush=True)
    return 0 if not lost else 1


if __name__ == "__main__":
    sys.exit(main())
