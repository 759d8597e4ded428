"""One side-by-side run: a local control plane, one Redis, Stalk's operator and KEDA,
and for each trace a namespace holding every pool, fed the trace at the same moments.

``python -m stalk_devenv.versus`` runs it and writes the report; ``--mode short`` is
what CI runs.
"""

from __future__ import annotations

import functools
import json
import secrets
import threading
import time
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from celery import Celery
from lightkube import Client, KubeConfig

from stalk_devenv.controlplane import ControlPlane
from stalk_devenv.keda import Keda
from stalk_devenv.kubelet import ProcessKubelet
from stalk_devenv.process import wait_until
from stalk_devenv.redis import RedisServer
from stalk_devenv.stack import CRDS, WORKER_LABELS, OperatorProcess, grant_operator
from stalk_devenv.versus import contenders
from stalk_devenv.versus.figures import pool_figures
from stalk_devenv.versus.recorder import Recorder, TaskRecord, pool_of
from stalk_devenv.versus.report import TraceResult
from stalk_devenv.versus.traces import Trace

TASK = "stalk_worker.tasks.canvas.sleep"
DATABASE = 0
FINISH_TIMEOUT_SECONDS = 600


@dataclass
class Bench:
    """The parts every trace shares, started once."""

    cluster: ControlPlane
    redis: RedisServer
    keda: Keda
    workdir: Path
    say: Callable[[str], None]

    @property
    def broker_url(self) -> str:
        return f"redis://:{self.redis.password}@127.0.0.1:{self.redis.port}/{DATABASE}"


def start(stack: ExitStack, workdir: Path, say: Callable[[str], None]) -> Bench:
    say("starting a local control plane, Redis and KEDA ...")
    cluster = ControlPlane(workdir / "controlplane", api_extensions=CRDS)
    cluster.start()
    stack.callback(cluster.stop)
    redis = RedisServer(workdir / "redis", password=secrets.token_hex(12)).start()
    stack.callback(redis.stop)
    keda = Keda(cluster, workdir / "keda").start()
    stack.callback(keda.stop)
    return Bench(cluster, redis, keda, workdir, say)


def run_trace(bench: Bench, trace: Trace) -> TraceResult:
    """Every pool in a fresh namespace, the trace sent to each; returns what was seen."""
    namespace = f"versus-{trace.name}"
    cluster, say = bench.cluster, bench.say
    pools = [contenders.STALK, *(s.name for s in contenders.KEDA_SETUPS)]
    with ExitStack() as stack:
        cluster.kubectl("create", "namespace", namespace)
        wait_until(
            lambda: bool(cluster.kubectl("get", "sa", "default", "-n", namespace, check=False)),
            30,
            "the namespace's default ServiceAccount",
        )
        cluster.create_secret(namespace, "redis", password=bench.redis.password or "")
        operator_env = {
            "STALK_DEFAULT_BROKER_URL": bench.redis.url,
            "STALK_DEFAULT_REDIS_PASSWORD": bench.redis.password or "",
            "STALK_DEFAULT_PASSWORD_SECRET": "redis:password",
        }
        grant_operator(cluster, namespace)
        (bench.workdir / namespace).mkdir(parents=True, exist_ok=True)
        operator = OperatorProcess(
            cluster, namespace, bench.workdir / namespace, operator_env, name="operator"
        )
        operator.start()
        stack.callback(operator.stop)
        kubelet = ProcessKubelet(
            cluster,
            bench.workdir / namespace / "kubelet",
            labels=WORKER_LABELS,
            namespace=namespace,
        ).start()
        stack.callback(kubelet.stop)
        _apply_pools(bench, namespace, operator.env)
        app = Celery("versus", broker=bench.broker_url, set_as_current=False)
        app.conf.update(task_serializer="json", accept_content=["json"])
        kube = Client(KubeConfig.from_file(str(cluster.kubeconfig)))
        recorder = Recorder(app, bench.redis.client(), kube, namespace, pools).start()
        stack.callback(recorder.stop)
        say(f"[{trace.name}] {trace.title}: {len(trace.sends)} tasks to each of {len(pools)} pools")
        start = time.time()
        producer = threading.Thread(
            target=_produce, args=(app, trace, pools, recorder, start), daemon=True
        )
        producer.start()
        producer.join(timeout=trace.last_send + 60)
        _wait_for_tasks(recorder, pools, start, say)
        finished = time.time()
        say(
            f"[{trace.name}] tasks finished or given up after {finished - start:.0f} s; "
            f"watching the way down for up to {trace.tail:.0f} s"
        )
        _wait_for_rest(recorder, pools, finished + trace.tail)
        end = time.time()
        recorder.stop()
        killed = _killed_pods(kubelet, pools)
    cluster.kubectl("delete", "namespace", namespace, "--wait=false", check=False)
    tasks = tuple(recorder.tasks.values())
    samples = tuple(recorder.samples)
    figures = tuple(
        pool_figures(pool, tasks, samples, start, end, killed.get(pool, 0)) for pool in pools
    )
    return TraceResult(trace, figures, samples, tasks, start, end)


def _apply_pools(bench: Bench, namespace: str, operator_env: dict[str, str]) -> None:
    """The TaskQueue, then for each KEDA setup the same Deployment, its ScaledObject and
    the TriggerAuthentication they share; waits for every ScaledObject to be Ready."""
    from stalk_operator.settings import OperatorSettings

    cluster = bench.cluster
    apply = _applier(cluster, namespace)
    apply(contenders.taskqueue(contenders.STALK))
    apply(contenders.trigger_authentication("redis", "password"))
    settings = OperatorSettings.from_environ(operator_env)
    address = f"127.0.0.1:{bench.redis.port}"
    for setup in contenders.KEDA_SETUPS:
        body = contenders.taskqueue(setup.name)
        defaulted = json.loads(
            cluster.kubectl(
                "create",
                "--dry-run=server",
                "-o",
                "json",
                "-f",
                "-",
                f"--namespace={namespace}",
                input_text=json.dumps(body),
            )
        )
        apply(contenders.keda_deployment(defaulted, settings))
        apply(contenders.scaled_object(setup, address, DATABASE))
    for setup in contenders.KEDA_SETUPS:
        wait_until(
            functools.partial(_ready, cluster, namespace, "scaledobject", setup.name),
            60,
            f"ScaledObject {setup.name} to be Ready",
        )
    wait_until(
        lambda: bool(
            cluster.kubectl("get", "deployment", contenders.STALK, "-n", namespace, check=False)
        ),
        30,
        "the TaskQueue's Deployment",
    )


def _applier(cluster: ControlPlane, namespace: str) -> Callable[[dict[str, Any]], None]:
    def apply(manifest: dict[str, Any]) -> None:
        cluster.kubectl(
            "apply", f"--namespace={namespace}", "-f", "-", input_text=json.dumps(manifest)
        )

    return apply


def _ready(cluster: ControlPlane, namespace: str, kind: str, name: str) -> bool:
    found = cluster.kubectl("get", kind, name, "-n", namespace, "-o", "json", check=False)
    if not found:
        return False
    conditions = json.loads(found).get("status", {}).get("conditions", [])
    return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)


def _produce(
    app: Celery, trace: Trace, pools: Sequence[str], recorder: Recorder, start: float
) -> None:
    for send in sorted(trace.sends, key=lambda s: s.at):
        delay = start + send.at - time.time()
        if delay > 0:
            time.sleep(delay)
        for pool in pools:
            options: dict[str, Any] = {"queue": pool}
            if send.priority is not None:
                options["priority"] = send.priority
            sent = time.time()
            result = app.send_task(TASK, args=(send.seconds, trace.name), **options)
            recorder.expect(result.id, TaskRecord(pool, sent, send.seconds, send.priority))


def _progress(recorder: Recorder, pools: Sequence[str], start: float) -> str:
    latest = {s.pool: s for s in recorder.samples[-len(pools) * 2 :]}
    cells = [
        f"{pool} {s.backlog}/{s.replicas}/{s.pods}"
        for pool in pools
        if (s := latest.get(pool)) is not None
    ]
    return (
        f"  {time.time() - start:4.0f}s  waiting/replicas/pods: {', '.join(cells)}; "
        f"unfinished {recorder.unfinished()}"
    )


def _wait_for_tasks(
    recorder: Recorder, pools: Sequence[str], start: float, say: Callable[[str], None]
) -> None:
    """Until every task sent has finished, or :data:`FINISH_TIMEOUT_SECONDS`; a line of
    progress every 10 s. A task no autoscaler ever starts a worker for (KEDA blind to a
    priority list, at zero replicas) is a result, not a failed run: the report counts it."""
    deadline = time.time() + FINISH_TIMEOUT_SECONDS
    last = 0.0
    while recorder.unfinished():
        if time.time() > deadline:
            say(f"{_progress(recorder, pools, start)}: given up after {FINISH_TIMEOUT_SECONDS} s")
            return
        if time.time() - last >= 10:
            say(_progress(recorder, pools, start))
            last = time.time()
            recorder.complete_from_results()  # events missed: the results still say
        time.sleep(0.5)


def _wait_for_rest(recorder: Recorder, pools: Sequence[str], deadline: float) -> None:
    """Until every pool is back to zero replicas and pods, or the deadline."""
    while time.time() < deadline:
        latest = {s.pool: s for s in recorder.samples[-len(pools) * 2 :]}
        if len(latest) == len(pools) and all(
            s.replicas == 0 and s.pods == 0 for s in latest.values()
        ):
            return
        time.sleep(1)


def _killed_pods(kubelet: ProcessKubelet, pools: Sequence[str]) -> dict[str, int]:
    """Worker pods whose worker container exited non-zero (killed after its grace)."""
    killed: dict[str, int] = {}
    for pod in kubelet.finished:
        pool = pool_of(pod.name, pools)
        if pool is not None and pod.exit_codes.get("worker") not in (0, None):
            killed[pool] = killed.get(pool, 0) + 1
    return killed
