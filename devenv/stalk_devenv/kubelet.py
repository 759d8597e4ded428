"""The process kubelet: runs the containers of selected pods as local processes.

KWOK gives pods a node and a Running status but runs nothing. For the pods this kubelet
selects, it runs each container's command and args as a local process in the project's
virtualenv, with the container's environment resolved the way the kubelet does (plain
values, Secret and ConfigMap references, the downward API, ``$(VAR)`` expansion: see
:mod:`stalk_devenv.podenv`), and ``emptyDir`` and ``secret`` mount paths mapped to
per-pod directories (a Secret's keys written there as files). A process whose container
has a ServiceAccount gets a kubeconfig with that account's token, so RBAC applies to it
as it would in a cluster.

On pod deletion it does what the kubelet does: SIGTERM, wait the grace period, SIGKILL,
and only then finishes the deletion, so a pod stays Terminating while its process drains.
"""

from __future__ import annotations

import base64
import logging
import os
import queue
import signal
import sys
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lightkube import Client, KubeConfig
from lightkube.core.exceptions import ApiError
from lightkube.models.core_v1 import Container
from lightkube.resources.core_v1 import ConfigMap, Pod, Secret

from stalk_devenv import podenv
from stalk_devenv.controlplane import CLAIMED_BY_PROCESS_KUBELET, ControlPlane
from stalk_devenv.models import prepare_decoders
from stalk_devenv.process import ManagedProcess

logger = logging.getLogger(__name__)

RESTART_BACKOFF_MAX_SECONDS = 10.0
INIT_TIMEOUT_SECONDS = 120.0
BASE_PATH = "/usr/local/bin:/usr/bin:/bin"


@dataclass
class ContainerProcess:
    container: str
    process: ManagedProcess
    restarts: int = 0
    next_restart: float = 0.0


@dataclass
class RunningPod:
    namespace: str
    name: str
    uid: str
    grace_seconds: int
    directory: Path
    restart_policy: str = "Always"
    containers: list[ContainerProcess] = field(default_factory=list)
    terminating: bool = False
    exit_codes: dict[str, int | None] = field(default_factory=dict)

    def restarts(self, exit_code: int | None) -> bool:
        """Whether an exited container is started again (the pod's restartPolicy)."""
        if self.restart_policy == "Always":
            return True
        return self.restart_policy == "OnFailure" and exit_code != 0


class ProcessKubelet:
    """Runs the pods matching ``labels`` (label name to value) as local processes."""

    def __init__(
        self,
        cluster: ControlPlane,
        workdir: Path,
        *,
        labels: Mapping[str, str],
        namespace: str | None = None,
        python_bin_dir: Path | None = None,
        images: Mapping[str, Path] | None = None,
        extra_env: Mapping[str, str] | None = None,
    ) -> None:
        self.cluster = cluster
        self.workdir = workdir
        self.labels: dict[str, Any] = dict(labels)
        self.namespace = namespace
        self.python_bin_dir = python_bin_dir or Path(sys.executable).parent
        self.images = dict(images or {})
        """Image name to the bin directory of the virtualenv that stands in for it (a
        team's own app); every other image runs from ``python_bin_dir``."""
        self._starting: set[str] = set()
        self._to_start: queue.Queue[Pod] = queue.Queue()
        self._deleted_while_starting: set[str] = set()
        self.extra_env = dict(extra_env or {})
        prepare_decoders()  # before the watch thread: see stalk_devenv.models
        self.client = Client(
            KubeConfig.from_file(cluster.kubeconfig), field_manager="process-kubelet"
        )
        self.pods: dict[str, RunningPod] = {}
        self.finished: list[RunningPod] = []
        self._lock = threading.RLock()
        self._stopping = threading.Event()
        self._threads: list[threading.Thread] = []

    # -- lifecycle ------------------------------------------------------------------

    def start(self) -> ProcessKubelet:
        self.workdir.mkdir(parents=True, exist_ok=True)
        for target in (self._watch_pods, self._supervise, self._starter):
            thread = threading.Thread(target=target, daemon=True, name=f"kubelet-{target.__name__}")
            thread.start()
            self._threads.append(thread)
        return self

    def stop(self) -> None:
        """Stop every process (SIGTERM, grace, SIGKILL) without touching the pods."""
        self._stopping.set()
        with self._lock:
            pods = list(self.pods.values())
        threads = [threading.Thread(target=self._terminate_processes, args=(p,)) for p in pods]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

    # -- watching -------------------------------------------------------------------

    def _watch_pods(self) -> None:
        while not self._stopping.is_set():
            try:
                for event, pod in self.client.watch(
                    Pod, namespace=self.namespace or "*", labels=self.labels
                ):
                    if self._stopping.is_set():
                        return
                    self._on_pod(event, pod)
            except Exception as exc:
                if self._stopping.is_set():
                    return
                logger.warning("pod watch failed, retrying: %s", exc)
                time.sleep(0.5)

    def _on_pod(self, event: str, pod: Pod) -> None:
        meta = pod.metadata
        assert meta is not None and meta.uid is not None
        with self._lock:
            running = self.pods.get(meta.uid)
        if event == "DELETED" or meta.deletionTimestamp is not None:
            if running is not None:
                self._begin_termination(running, pod)
            elif meta.uid in self._starting:
                self._deleted_while_starting.add(meta.uid)  # _start_pod finishes it
            elif (meta.annotations or {}).get(CLAIMED_BY_PROCESS_KUBELET):
                self._finish_deletion(meta.namespace or "", meta.name or "")
            return
        if pod.spec is None or running is not None:
            return
        # Claim at creation, before the pod is scheduled: KWOK acts the moment it is.
        if not (meta.annotations or {}).get(CLAIMED_BY_PROCESS_KUBELET):
            self._claim(pod)
        if not pod.spec.nodeName:
            return
        if pod.status is not None and pod.status.phase == "Running":
            self._run(pod)

    def _claim(self, pod: Pod) -> None:
        assert pod.metadata is not None
        try:
            self.client.patch(
                Pod,
                pod.metadata.name or "",
                namespace=pod.metadata.namespace,
                obj={"metadata": {"annotations": {CLAIMED_BY_PROCESS_KUBELET: "true"}}},
            )
        except ApiError as exc:
            logger.warning("cannot claim pod %s: %s", pod.metadata.name, exc)

    # -- running --------------------------------------------------------------------

    def _run(self, pod: Pod) -> None:
        """Queue the pod for the starter thread: init containers take a while, and the
        watch must not wait for them."""
        assert pod.metadata is not None and pod.metadata.uid is not None
        with self._lock:
            if pod.metadata.uid in self._starting:
                return
            self._starting.add(pod.metadata.uid)
        self._to_start.put(pod)

    def _starter(self) -> None:
        """Start queued pods, one at a time, from this one long-lived thread: a child
        started with PR_SET_PDEATHSIG dies with the *thread* that started it."""
        while not self._stopping.is_set():
            try:
                pod = self._to_start.get(timeout=0.5)
            except queue.Empty:
                continue
            self._start_pod(pod)

    def _start_pod(self, pod: Pod) -> None:
        meta, spec = pod.metadata, pod.spec
        assert meta is not None and spec is not None and meta.uid is not None
        directory = self.workdir / f"{meta.namespace}_{meta.name}"
        directory.mkdir(parents=True, exist_ok=True)
        running = RunningPod(
            namespace=meta.namespace or "",
            name=meta.name or "",
            uid=meta.uid,
            grace_seconds=spec.terminationGracePeriodSeconds
            if spec.terminationGracePeriodSeconds is not None
            else 30,
            directory=directory,
            restart_policy=spec.restartPolicy or "Always",
        )
        mounts = self._mounts(pod, directory)
        try:
            base_env = self._base_env(pod, directory)
            for init in spec.initContainers or []:
                process = self._launch(pod, init, base_env, mounts, directory)
                code = process.wait(timeout=INIT_TIMEOUT_SECONDS)
                if code != 0:
                    raise RuntimeError(f"init container {init.name} exited with {code}")
            for container in spec.containers:
                process = self._launch(pod, container, base_env, mounts, directory)
                running.containers.append(ContainerProcess(container.name, process))
        except Exception as exc:
            logger.error("cannot run pod %s/%s: %s", meta.namespace, meta.name, exc)
            (directory / "kubelet-error.log").write_text(str(exc))
            for started in running.containers:
                started.process.kill()
            return
        with self._lock:
            self.pods[meta.uid] = running
            deleted = meta.uid in self._deleted_while_starting
        if deleted:
            self._begin_termination(running, pod)
        logger.info("running pod %s/%s", meta.namespace, meta.name)

    def _launch(
        self,
        pod: Pod,
        container: Container,
        base_env: Mapping[str, str],
        mounts: Mapping[str, Path],
        directory: Path,
    ) -> ManagedProcess:
        """One container as a process, with the Python of its image on its PATH."""
        env = {
            **base_env,
            "PATH": f"{self._bin_dir(container.image)}{os.pathsep}{BASE_PATH}",
            **podenv.container_env(
                pod, container, mounts, self._secret_data, self._config_map_data
            ),
        }
        argv = [
            podenv.expand(part, env)
            for part in [*(container.command or []), *(container.args or [])]
        ]
        if not argv:
            raise ValueError(
                f"container {container.name} has no command: the "
                "process kubelet cannot know an image's entrypoint"
            )
        argv = [podenv.map_paths(part, mounts) for part in argv]
        cwd = (
            Path(podenv.map_paths(container.workingDir, mounts))
            if container.workingDir
            else directory
        )
        process = ManagedProcess(container.name, argv, directory, env=env, cwd=cwd)
        process.start()
        return process

    def _bin_dir(self, image: str | None) -> Path:
        """Where an image's programs are: the project's venv unless ``images`` says."""
        return self.images.get(image or "", self.python_bin_dir)

    def _mounts(self, pod: Pod, directory: Path) -> dict[str, Path]:
        assert pod.spec is not None
        volumes = {v.name: v for v in pod.spec.volumes or []}
        mounts: dict[str, Path] = {}
        for container in [*(pod.spec.initContainers or []), *pod.spec.containers]:
            for mount in container.volumeMounts or []:
                volume = volumes.get(mount.name)
                if volume is None or (volume.emptyDir is None and volume.secret is None):
                    continue
                local = directory / "volumes" / mount.name
                local.mkdir(parents=True, exist_ok=True)
                if volume.secret is not None:
                    self._write_secret(podenv.namespace_of(pod), volume.secret, local)
                mounts[mount.mountPath] = local
        return mounts

    def _write_secret(self, namespace: str, source: Any, local: Path) -> None:
        """A ``secret`` volume's files: its ``items`` (key to path), else every key."""
        data = self._secret_data(namespace, source.secretName or "", bool(source.optional))
        items = [(i.key, i.path) for i in source.items or []] or [(k, k) for k in data]
        for key, path in items:
            if key in data:
                (local / path).write_text(data[key])

    def _base_env(self, pod: Pod, directory: Path) -> dict[str, str]:
        assert pod.metadata is not None and pod.spec is not None
        env = {
            "HOME": str(directory),
            "HOSTNAME": pod.metadata.name or "",
            "TMPDIR": str(directory),
            "LANG": "C.UTF-8",
            **self.extra_env,
        }
        account = pod.spec.serviceAccountName or "default"
        if pod.spec.automountServiceAccountToken is not False:
            token = self.cluster.service_account_token(podenv.namespace_of(pod), account)
            env["KUBECONFIG"] = str(
                self.cluster.kubeconfig_for_token(token, directory / "serviceaccount.kubeconfig")
            )
        return env

    def _secret_data(self, namespace: str, name: str, optional: bool) -> dict[str, str]:
        try:
            secret = self.client.get(Secret, name, namespace=namespace)
        except ApiError:
            if optional:
                return {}
            raise
        return {k: base64.b64decode(v).decode() for k, v in (secret.data or {}).items()}

    def _config_map_data(self, namespace: str, name: str, optional: bool) -> dict[str, str]:
        try:
            return dict(self.client.get(ConfigMap, name, namespace=namespace).data or {})
        except ApiError:
            if optional:
                return {}
            raise

    # -- supervision and termination ------------------------------------------------

    def _supervise(self) -> None:
        """Restart containers that exit while their pod lives, as its restartPolicy says;
        a pod whose containers have all exited for good ends Succeeded or Failed."""
        while not self._stopping.wait(0.5):
            with self._lock:
                pods = [p for p in self.pods.values() if not p.terminating]
            now = time.monotonic()
            for pod in pods:
                exited = {
                    c.container: c.process.returncode
                    for c in pod.containers
                    if not c.process.running()
                }
                if len(exited) == len(pod.containers) and not any(
                    pod.restarts(code) for code in exited.values()
                ):
                    self._complete(pod, exited)
                    continue
                for container in pod.containers:
                    if container.process.running() or now < container.next_restart:
                        continue
                    if not pod.restarts(container.process.returncode):
                        continue
                    if self._stopping.is_set():
                        return
                    if container.next_restart == 0.0:
                        backoff = min(RESTART_BACKOFF_MAX_SECONDS, 2.0**container.restarts)
                        container.next_restart = now + backoff
                        logger.warning(
                            "%s/%s %s exited; restarting in %.0fs",
                            pod.namespace,
                            pod.name,
                            container.container,
                            backoff,
                        )
                        continue
                    with self._lock:
                        if pod.terminating:
                            break
                        container.restarts += 1
                        container.next_restart = 0.0
                        container.process.start()

    def _complete(self, pod: RunningPod, exit_codes: dict[str, int | None]) -> None:
        """Report a run-to-completion pod's end in its status, as the kubelet does."""
        with self._lock:
            pod.terminating = True
            pod.exit_codes.update(exit_codes)
            self.pods.pop(pod.uid, None)
            self.finished.append(pod)
        succeeded = all(code == 0 for code in exit_codes.values())
        statuses = [
            {
                "name": name,
                "ready": False,
                "restartCount": 0,
                "image": "",
                "imageID": "",
                "state": {
                    "terminated": {
                        "exitCode": code if code is not None and code >= 0 else 137,
                        "reason": "Completed" if code == 0 else "Error",
                    }
                },
            }
            for name, code in exit_codes.items()
        ]
        try:
            self.client.patch(
                Pod.Status,
                pod.name,
                namespace=pod.namespace,
                obj={
                    "status": {
                        "phase": "Succeeded" if succeeded else "Failed",
                        "containerStatuses": statuses,
                    }
                },
            )
        except ApiError as exc:
            logger.warning("cannot report the end of %s/%s: %s", pod.namespace, pod.name, exc)

    def _begin_termination(self, running: RunningPod, pod: Pod) -> None:
        with self._lock:
            if running.terminating:
                return
            running.terminating = True
        grace = running.grace_seconds
        if pod.metadata is not None and pod.metadata.deletionGracePeriodSeconds is not None:
            grace = pod.metadata.deletionGracePeriodSeconds
        running.grace_seconds = grace
        threading.Thread(target=self._terminate, args=(running,), daemon=True).start()

    def _terminate(self, running: RunningPod) -> None:
        self._terminate_processes(running)
        self._finish_deletion(running.namespace, running.name)
        with self._lock:
            self.pods.pop(running.uid, None)
            self.finished.append(running)

    def _terminate_processes(self, running: RunningPod) -> None:
        """SIGTERM every container, wait out the grace period together, SIGKILL the rest."""
        deadline = time.monotonic() + running.grace_seconds
        for container in running.containers:
            container.process.send(signal.SIGTERM)
        for container in running.containers:
            remaining = max(0.0, deadline - time.monotonic())
            running.exit_codes[container.container] = container.process.stop(grace=remaining)

    def _finish_deletion(self, namespace: str, name: str) -> None:
        try:
            self.client.delete(Pod, name, namespace=namespace, grace_period=0)
        except ApiError as exc:
            if exc.status.code != 404:
                logger.warning("cannot finish deleting %s/%s: %s", namespace, name, exc)

    # -- for tests ------------------------------------------------------------------

    def running_pods(self) -> list[RunningPod]:
        with self._lock:
            return [p for p in self.pods.values() if not p.terminating]

    def log_path(self, namespace: str, pod: str, container: str) -> Path:
        return self.workdir / f"{namespace}_{pod}" / f"{container}.log"
