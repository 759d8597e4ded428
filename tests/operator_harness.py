"""The Stalk operator as a real process on the test cluster, as its own ServiceAccount."""

from __future__ import annotations

import os
import sys
import urllib.request
from pathlib import Path

from kube import Cluster
from stalk_devenv.controlplane import ControlPlane
from stalk_devenv.process import ManagedProcess, free_port

REPO = Path(__file__).resolve().parents[1]
CRDS = [
    REPO / "manifests" / "crd" / "stalk.dev_taskqueues.yaml",
    REPO / "manifests" / "crd" / "kopf.dev_peerings.yaml",
]
RBAC = REPO / "manifests" / "operator" / "rbac.yaml"
WORKER_LABELS = {"app.kubernetes.io/managed-by": "stalk-operator"}


class OperatorProcess:
    def __init__(
        self,
        control_plane: ControlPlane,
        cluster: Cluster,
        namespace: str,
        workdir: Path,
        env: dict[str, str],
    ) -> None:
        self.cluster = cluster
        self.namespace = namespace
        self.workdir = workdir
        self.metrics_port = free_port()
        self.health_port = free_port()
        token = control_plane.service_account_token(namespace, "stalk-operator", 7200)
        kubeconfig = control_plane.kubeconfig_for_token(token, workdir / "operator.kubeconfig")
        self.env = {
            **os.environ,
            "KUBECONFIG": str(kubeconfig),
            "STALK_NAMESPACES": namespace,
            "STALK_METRICS_PORT": str(self.metrics_port),
            "STALK_HEALTH_PORT": str(self.health_port),
            "STALK_DEFAULT_WORKER_IMAGE": "stalk-worker:dev",
            "STALK_STANDALONE": "true",
            **env,
        }
        self.generation = 0
        self.process: ManagedProcess | None = None

    def start(self) -> OperatorProcess:
        self.generation += 1
        self.process = ManagedProcess(
            f"operator-{self.generation}",
            [sys.executable, "-m", "stalk_operator"],
            self.workdir,
            env=self.env,
        )
        self.process.start(ready=self.healthy, timeout=60)
        return self

    def healthy(self) -> bool:
        try:
            with urllib.request.urlopen(
                f"http://127.0.0.1:{self.health_port}/healthz", timeout=1
            ) as reply:
                return reply.status == 200
        except OSError:
            return False

    def metrics(self) -> str:
        with urllib.request.urlopen(
            f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=2
        ) as reply:
            return reply.read().decode()

    def log(self) -> str:
        assert self.process is not None
        return self.process.log_path.read_text(errors="replace")

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop(grace=10)

    def kill(self) -> None:
        if self.process is not None:
            self.process.kill()


def install_crds(cluster: Cluster) -> None:
    for crd in CRDS:
        cluster.kubectl("apply", "-f", str(crd))
    cluster.kubectl(
        "wait", "--for=condition=Established", "--timeout=60s", "crd/taskqueues.stalk.dev"
    )


def grant_operator(cluster: Cluster, namespace: str) -> None:
    """The operator's ServiceAccount in ``namespace``, bound to the shipped ClusterRole."""
    cluster.kubectl("apply", "-f", str(RBAC), namespace=namespace)
    cluster.kubectl(
        "create",
        "clusterrolebinding",
        f"stalk-operator-{namespace}",
        "--clusterrole=stalk-operator",
        f"--serviceaccount={namespace}:stalk-operator",
    )


def taskqueue(name: str, queues: list[str], **spec: object) -> dict:
    return {
        "apiVersion": "stalk.dev/v1alpha1",
        "kind": "TaskQueue",
        "metadata": {"name": name},
        "spec": {"queues": queues, **spec},
    }
