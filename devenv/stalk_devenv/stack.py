"""Stalk on the local control plane: its CRDs, RBAC, and the operator as a process.

The operator runs with a token of its own ServiceAccount, bound to the shipped
ClusterRole, so the RBAC in ``manifests/`` is what it really gets.
"""

from __future__ import annotations

import json
import os
import sys
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml
from stalk_config import conventions

from stalk_devenv.controlplane import REPO_ROOT, ControlPlane
from stalk_devenv.process import ManagedProcess, free_port, wait_until

CRDS = (
    REPO_ROOT / "manifests" / "crd" / "stalk.dev_taskqueues.yaml",
    REPO_ROOT / "manifests" / "crd" / "kopf.dev_peerings.yaml",
)
ADMISSION_POLICY = REPO_ROOT / "manifests" / "admission" / "taskqueue-policy.yaml"
TASKQUEUE_ROLES = REPO_ROOT / "manifests" / "rbac" / "taskqueue-roles.yaml"
RBAC = REPO_ROOT / "manifests" / "operator" / "rbac.yaml"
WORKER_LABELS = {"app.kubernetes.io/managed-by": conventions.WORKER_MANAGED_BY}


TEST_PREFIX = "devenv-"
"""The shipped cluster-wide objects (ClusterRoles, the admission policy) are applied under
this prefix, so that a test installing the chart (whose release owns objects of the
shipped names) never finds them taken."""


def prefixed(manifest: Path) -> list[dict[str, Any]]:
    """The cluster-wide objects of a shipped manifest, renamed under :data:`TEST_PREFIX`."""
    documents = [doc for doc in yaml.safe_load_all(manifest.read_text()) if doc]
    for doc in documents:
        doc["metadata"]["name"] = TEST_PREFIX + doc["metadata"]["name"]
        if doc["kind"] == "ValidatingAdmissionPolicyBinding":
            doc["spec"]["policyName"] = TEST_PREFIX + doc["spec"]["policyName"]
    return documents


def wait_for_admission_policy(dry_run: Callable[[str], str], timeout: float = 30) -> None:
    """Wait until the API server enforces the TaskQueue admission policy: a new policy
    takes a moment to compile and bind, and TaskQueues written meanwhile pass unchecked.
    ``dry_run`` creates a manifest with ``--dry-run=server`` and returns the refusal."""
    probe = {
        "apiVersion": "stalk.dev/v1alpha1",
        "kind": "TaskQueue",
        "metadata": {"name": "admission-probe", "namespace": "default"},
        "spec": {"queues": ["probe"], "worker": {"podTemplate": {"nodeName": "probe"}}},
    }

    def enforced() -> bool:
        return "podTemplate.nodeName is not allowed" in dry_run(json.dumps(probe))

    wait_until(enforced, timeout, "the TaskQueue admission policy to be enforced")


def grant_operator(control_plane: ControlPlane, namespace: str) -> None:
    """The operator's ServiceAccount in ``namespace``, bound to the rules of the shipped
    ClusterRoles (manifests/operator/rbac.yaml, rendered from the chart)."""
    roles = []
    for doc in yaml.safe_load_all(RBAC.read_text()):
        if doc["kind"] == "ServiceAccount":
            control_plane.kubectl(
                "apply", f"--namespace={namespace}", "-f", "-", input_text=json.dumps(doc)
            )
    for doc in prefixed(RBAC):
        if doc["kind"] == "ClusterRole":
            control_plane.kubectl("apply", "-f", "-", input_text=json.dumps(doc))
            roles.append(doc["metadata"]["name"])
    for role in roles:
        control_plane.kubectl(
            "create",
            "clusterrolebinding",
            f"{role}-{namespace}",
            f"--clusterrole={role}",
            f"--serviceaccount={namespace}:stalk-operator",
        )


def revoke_operator(control_plane: ControlPlane, namespace: str) -> None:
    for doc in yaml.safe_load_all(RBAC.read_text()):
        if doc["kind"] == "ClusterRole":
            binding = f"{TEST_PREFIX}{doc['metadata']['name']}-{namespace}"
            control_plane.kubectl("delete", "clusterrolebinding", binding, check=False)


class OperatorProcess:
    """``python -m stalk_operator`` as a local process, as its ServiceAccount."""

    def __init__(
        self,
        control_plane: ControlPlane,
        namespace: str,
        workdir: Path,
        env: dict[str, str],
        name: str = "operator",
    ) -> None:
        self.name = name
        self.namespace = namespace
        self.workdir = workdir
        self.metrics_port = free_port()
        self.health_port = free_port()
        token = control_plane.service_account_token(namespace, "stalk-operator", 7200)
        kubeconfig = control_plane.kubeconfig_for_token(token, workdir / f"{name}.kubeconfig")
        self.env = {
            **os.environ,
            "KUBECONFIG": str(kubeconfig),
            "STALK_NAMESPACES": namespace,
            "STALK_METRICS_PORT": str(self.metrics_port),
            "STALK_HEALTH_PORT": str(self.health_port),
            "STALK_DEFAULT_WORKER_IMAGE": "stalk-worker:dev",
            "STALK_STANDALONE": "true",
            "PYTHONUNBUFFERED": "1",  # tests read the log as it is written
            **env,
        }
        self.generation = 0
        self.process: ManagedProcess | None = None

    def start(self) -> OperatorProcess:
        self.generation += 1
        self.process = ManagedProcess(
            f"{self.name}-{self.generation}",
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
                return bool(reply.status == 200)
        except OSError:
            return False

    def metrics(self) -> str:
        """One scrape, with Prometheus's default scrape timeout."""
        with urllib.request.urlopen(
            f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=10
        ) as reply:
            return str(reply.read().decode())

    def log(self) -> str:
        assert self.process is not None
        return self.process.log_path.read_text(errors="replace")

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop(grace=10)

    def kill(self) -> None:
        if self.process is not None:
            self.process.kill()
