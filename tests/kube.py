"""Test-side helpers for a Kubernetes cluster: kubectl, apply, wait with a clear message."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from stalk_devenv.binaries import BinariesMissingError, find_binaries
from stalk_devenv.controlplane import ControlPlane, secret_args, wait_established
from stalk_devenv.process import wait_until


def require_built(find: Callable[[], Path] = find_binaries, what: str = "Kubernetes") -> Path:
    """Binaries built from Go modules (by default the Kubernetes ones and helm): a skip
    where they were never built, a failure in CI, where hack/setup.sh must build them."""
    try:
        return find()
    except BinariesMissingError as exc:
        if os.environ.get("CI"):
            pytest.fail(f"the {what} binaries are missing in CI: {exc}")
        pytest.skip(f"no {what} binaries here (run hack/setup.sh): {exc}")


def require_binaries() -> Path:
    return require_built()


class Cluster:
    """What a test needs of a cluster: kubectl, and whether it is the local one."""

    def __init__(
        self, kubeconfig: Path, kubectl_binary: str, control_plane: ControlPlane | None
    ) -> None:
        self.kubeconfig = kubeconfig
        self.kubectl_binary = kubectl_binary
        self.control_plane = control_plane

    @property
    def local(self) -> bool:
        return self.control_plane is not None

    def kubectl(
        self,
        *args: str,
        input_text: str | None = None,
        check: bool = True,
        namespace: str | None = None,
        timeout: float | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """``timeout`` (seconds) for commands that can hang, such as ``exec`` into a pod
        that is going away; it raises ``subprocess.TimeoutExpired``."""
        argv = [self.kubectl_binary, f"--kubeconfig={self.kubeconfig}"]
        if namespace:
            argv.append(f"--namespace={namespace}")
        result = subprocess.run(
            [*argv, *args],
            input=input_text,
            capture_output=True,
            text=True,
            check=False,
            timeout=timeout,
        )
        if check and result.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed: {result.stderr.strip()}")
        return result

    def wait_established(self, *crds: str) -> None:
        wait_established(lambda *args, check: self.kubectl(*args, check=check).stdout, names=crds)

    def refusal(self, manifest: str) -> str:
        """What the API server says to creating ``manifest`` (a server-side dry run)."""
        created = self.kubectl(
            "create", "--dry-run=server", "-f", "-", input_text=manifest, check=False
        )
        return created.stderr

    def create_secret(self, namespace: str, name: str, **data: str) -> None:
        self.kubectl(*secret_args(name, data), namespace=namespace)

    def taskqueue_status(self, namespace: str, name: str) -> dict[str, Any]:
        return dict(self.get_json("taskqueue", name, namespace=namespace).get("status", {}))

    def taskqueue_condition(self, namespace: str, name: str, kind: str) -> dict[str, Any]:
        """One condition of a TaskQueue's status; empty when it is not there yet."""
        conditions = self.taskqueue_status(namespace, name).get("conditions", [])
        return next((c for c in conditions if c["type"] == kind), {})

    def run_pod(
        self,
        name: str,
        image: str,
        command: list[str],
        namespace: str = "default",
        labels: dict[str, str] | None = None,
    ) -> tuple[str, str]:
        """Run one container to completion on a real node, as the image's own user with a
        read-only root filesystem; its phase and log."""
        container = {
            "name": "main",
            "image": image,
            "imagePullPolicy": "Never",
            "command": command,
            "securityContext": {
                "readOnlyRootFilesystem": True,
                "allowPrivilegeEscalation": False,
                "runAsNonRoot": True,
            },
            "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
        }
        pod = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": name, "namespace": namespace, "labels": labels or {}},
            "spec": {
                "restartPolicy": "Never",
                "automountServiceAccountToken": False,
                "enableServiceLinks": False,
                "containers": [container],
                "volumes": [{"name": "tmp", "emptyDir": {}}],
            },
        }
        self.apply(pod)
        return self.finish_pod(name, namespace, timeout=120)

    def finish_pod(self, name: str, namespace: str, timeout: float) -> tuple[str, str]:
        def phase() -> str:
            found = self.get_json("pod", name, namespace=namespace)
            return str(found.get("status", {}).get("phase", ""))

        wait_for(lambda: phase() in ("Succeeded", "Failed"), timeout, f"pod {name} to finish")
        log = self.kubectl("logs", name, namespace=namespace, check=False).stdout
        return phase(), log

    def get_json(self, *args: str, namespace: str | None = None) -> Any:
        return json.loads(self.kubectl("get", *args, "-o", "json", namespace=namespace).stdout)

    def apply(
        self,
        manifest: str | dict[str, Any] | list[Any],
        namespace: str | None = None,
        check: bool = True,
    ) -> subprocess.CompletedProcess[str]:
        text = (
            manifest
            if isinstance(manifest, str)
            else json.dumps(
                {"apiVersion": "v1", "kind": "List", "items": manifest}
                if isinstance(manifest, list)
                else manifest
            )
        )
        return self.kubectl("apply", "-f", "-", input_text=text, namespace=namespace, check=check)


def wait_for(
    condition: Callable[[], object], timeout: float, what: str, interval: float = 0.1
) -> None:
    """Wait until ``condition()`` is truthy; the failure names what was awaited."""
    wait_until(lambda: bool(condition()), timeout, what, interval=interval)


class ReplicaWatch:
    """Watches a Deployment's ``spec.replicas`` from a thread, noting when each value was
    first seen. A watch costs nothing while it waits, unlike polling with kubectl, so it
    does not slow down the operator it measures."""

    def __init__(self, kubeconfig: Path, namespace: str, name: str) -> None:
        import threading

        from lightkube import Client, KubeConfig
        from stalk_devenv.models import prepare_decoders

        prepare_decoders()  # before the watch thread: see stalk_devenv.models
        self._client = Client(KubeConfig.from_file(kubeconfig))
        self.namespace, self.name = namespace, name
        self.history: list[tuple[float, int]] = []
        self.wall_history: list[tuple[float, int]] = []
        """The same changes with wall-clock times, to compare with task timestamps."""
        self._changed = threading.Condition()
        threading.Thread(target=self._watch, daemon=True).start()

    def _watch(self) -> None:
        import time

        from lightkube.resources.apps_v1 import Deployment

        while True:  # the API server may go away in a fault test: watch again
            try:
                for _, obj in self._client.watch(
                    Deployment, namespace=self.namespace, fields={"metadata.name": self.name}
                ):
                    replicas = obj.spec.replicas if obj.spec is not None else None
                    if replicas is None:
                        continue
                    with self._changed:
                        if not self.history or self.history[-1][1] != replicas:
                            self.history.append((time.monotonic(), replicas))
                            self.wall_history.append((time.time(), replicas))
                            self._changed.notify_all()
            except Exception:
                time.sleep(0.5)

    def wait_for(self, replicas: int, timeout: float, after: float = 0.0) -> float:
        """The monotonic time ``replicas`` was first seen after ``after``."""

        def seen() -> float | None:
            return next((t for t, r in self.history if r == replicas and t >= after), None)

        with self._changed:
            if not self._changed.wait_for(lambda: seen() is not None, timeout):
                raise TimeoutError(
                    f"{self.namespace}/{self.name} did not reach {replicas} "
                    f"replicas in {timeout}s; saw {self.history}"
                )
        found = seen()
        assert found is not None
        return found

    @property
    def values(self) -> list[int]:
        return [r for _, r in self.history]


class PodStages:
    """Watches pods of a label selector from a thread, noting (wall-clock) when each pod
    was first seen scheduled, with its containers running, and Ready, and how its
    containers exited."""

    STAGES = ("scheduled", "running", "ready")

    def __init__(self, kubeconfig: Path, namespace: str, selector: dict[str, str]) -> None:
        import threading

        from lightkube import Client, KubeConfig
        from stalk_devenv.models import prepare_decoders

        prepare_decoders()  # before the watch thread: see stalk_devenv.models
        self._client = Client(KubeConfig.from_file(kubeconfig))
        self.namespace, self.selector = namespace, selector
        self.seen: dict[str, dict[str, float]] = {}
        self.exit_codes: dict[str, dict[str, int]] = {}
        """Each pod's containers that terminated, and their exit codes (137: killed)."""
        threading.Thread(target=self._watch, daemon=True).start()

    def _watch(self) -> None:
        import time

        from lightkube.resources.core_v1 import Pod

        while True:
            try:
                for _, pod in self._client.watch(
                    Pod, namespace=self.namespace, labels=self.selector
                ):
                    now = time.time()
                    stages = self.seen.setdefault(pod.metadata.name, {})
                    status, spec = pod.status, pod.spec
                    reached = {
                        "scheduled": bool(spec and spec.nodeName),
                        "running": bool(
                            status
                            and status.containerStatuses
                            and all(c.state and c.state.running for c in status.containerStatuses)
                        ),
                        "ready": bool(
                            status
                            and any(
                                c.type == "Ready" and c.status == "True"
                                for c in status.conditions or []
                            )
                        ),
                    }
                    for stage, done in reached.items():
                        if done:
                            stages.setdefault(stage, now)
                    for container in (status.containerStatuses if status else None) or []:
                        if container.state and container.state.terminated:
                            codes = self.exit_codes.setdefault(pod.metadata.name, {})
                            codes[container.name] = container.state.terminated.exitCode
            except Exception:
                time.sleep(0.5)
