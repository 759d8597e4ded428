"""A real Kubernetes control plane as local processes, like envtest or kwokctl's binary runtime.

etcd, kube-apiserver, kube-controller-manager, kube-scheduler, and KWOK keeping fake
nodes Ready and moving their pods to Running; each one's command line comes from
:mod:`stalk_devenv.components`. Everything listens on loopback on free ports;
:meth:`ControlPlane.stop` leaves no process behind.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import ssl
import subprocess
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from stalk_devenv import components
from stalk_devenv.binaries import KWOK_STAGES, find_binaries
from stalk_devenv.pki import CertificateAuthority, write_key, write_public_key
from stalk_devenv.process import ManagedProcess, free_port, wait_until

REPO_ROOT = Path(__file__).resolve().parents[2]
FAKE_NODE_ANNOTATION = "kwok.x-k8s.io/node"
FAKE_NODE_LABEL = "type"
CLAIMED_BY_PROCESS_KUBELET = "devenv.stalk.dev/process-kubelet"
"""Annotation on pods whose containers run as local processes: KWOK leaves their completion
and deletion to the process kubelet, which acts when the process exits, as a kubelet does."""


@dataclass
class ControlPlane:
    """One local cluster. ``start()`` returns when nodes are Ready and the API serves."""

    workdir: Path
    bin_dir: Path = field(default_factory=find_binaries)
    nodes: int = 3
    detached: bool = False
    """Whether the processes may outlive this Python process (``stalk_devenv up``)."""
    api_extensions: tuple[Path, ...] = ()
    """CRDs (and admission policies) installed before the controller-manager starts, so
    that its garbage collector knows them from the start (it discovers new kinds only
    every 30 s)."""
    address: str = "127.0.0.1"
    """Where the API server listens: loopback, or an address of this machine that a real
    node's pods can reach (see :mod:`stalk_devenv.node`)."""
    processes: dict[str, ManagedProcess] = field(default_factory=dict)
    api_port: int = 0

    @property
    def server(self) -> str:
        return f"https://{self.address}:{self.api_port}"

    @property
    def kubeconfig(self) -> Path:
        return self.workdir / "kubeconfig"

    @property
    def pki(self) -> Path:
        return self.workdir / "pki"

    @property
    def ca_path(self) -> Path:
        return self.pki / "ca.crt"

    def binary(self, name: str) -> str:
        return str(self.bin_dir / name)

    # -- start -----------------------------------------------------------------------

    def start(self) -> ControlPlane:
        self.workdir.mkdir(parents=True, exist_ok=True)
        try:
            self._issue_certificates()
            self._start_etcd()
            self._start_apiserver()
            self._write_kubeconfig()
            self._install_api_extensions()
            self._start_controller_manager()
            self._start_scheduler()
            self._start_kwok()
            self._create_nodes()
        except BaseException:
            self.stop()
            raise
        return self

    def _issue_certificates(self) -> None:
        ca = CertificateAuthority(self.pki, name="stalk-devenv-kubernetes-ca")
        self._serving = ca.issue(
            "apiserver",
            common_name="kube-apiserver",
            server=True,
            dns_names=(
                "localhost",
                "kubernetes",
                "kubernetes.default",
                "kubernetes.default.svc",
                "kubernetes.default.svc.cluster.local",
            ),
            ip_addresses=tuple(dict.fromkeys(("127.0.0.1", "10.96.0.1", self.address))),
        )
        self._kubelet_client = ca.issue(
            "apiserver-kubelet-client", common_name="kube-apiserver-kubelet-client", client=True
        )
        self.ca = ca
        """Issues the certificates of a real node's kubelet."""
        self._admin = ca.issue(
            "admin", common_name="stalk-admin", organizations=("system:masters",), client=True
        )
        front_proxy_ca = CertificateAuthority(self.pki / "front-proxy", "front-proxy-ca")
        self._front_proxy_ca = front_proxy_ca.cert_path
        self._front_proxy = front_proxy_ca.issue(
            "front-proxy-client", common_name="front-proxy-client", client=True
        )
        from cryptography.hazmat.primitives.asymmetric import rsa

        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self._sa_key = write_key(key, self.pki / "sa.key")
        self._sa_pub = write_public_key(key, self.pki / "sa.pub")

    def _start_etcd(self) -> None:
        client, peer = free_port(), free_port()
        self._etcd_url = f"http://127.0.0.1:{client}"  # as components.etcd listens
        process = ManagedProcess(
            "etcd",
            components.etcd(self.binary("etcd"), self.workdir / "etcd", client, peer),
            self.workdir / "logs",
            detached=self.detached,
        )
        process.start(ready=lambda: http_ok(f"{self._etcd_url}/health"), timeout=30)
        self.processes["etcd"] = process

    def _start_apiserver(self) -> None:
        self.api_port = free_port()
        process = ManagedProcess(
            "kube-apiserver",
            components.apiserver(
                self.binary("kube-apiserver"),
                etcd_url=self._etcd_url,
                port=self.api_port,
                serving=self._serving,
                client_ca=self.ca_path,
                service_account_key=self._sa_key,
                service_account_public_key=self._sa_pub,
                address=self.address,
                kubelet_client=self._kubelet_client,
                front_proxy=self._front_proxy,
                front_proxy_ca=self._front_proxy_ca,
            ),
            self.workdir / "logs",
            detached=self.detached,
        )
        process.start(ready=self._api_ready, timeout=90)
        self.processes["kube-apiserver"] = process

    def _admin_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=str(self.ca_path))
        context.load_cert_chain(self._admin.cert, self._admin.key)
        return context

    def _api_ready(self) -> bool:
        return http_ok(f"{self.server}/readyz", self._admin_context())

    def _write_kubeconfig(self) -> None:
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "current-context": "stalk-devenv",
            "clusters": [
                {
                    "name": "stalk-devenv",
                    "cluster": {"server": self.server, "certificate-authority": str(self.ca_path)},
                }
            ],
            "users": [
                {
                    "name": "admin",
                    "user": {
                        "client-certificate": str(self._admin.cert),
                        "client-key": str(self._admin.key),
                    },
                }
            ],
            "contexts": [
                {
                    "name": "stalk-devenv",
                    "context": {"cluster": "stalk-devenv", "user": "admin", "namespace": "default"},
                }
            ],
        }
        self.kubeconfig.write_text(yaml.safe_dump(config))
        self.kubeconfig.chmod(0o600)

    def _install_api_extensions(self) -> None:
        for manifest in self.api_extensions:
            self.kubectl("apply", "-f", str(manifest))
        if self.api_extensions:
            wait_established(self.kubectl)

    def _start_controller_manager(self) -> None:
        process = ManagedProcess(
            "kube-controller-manager",
            components.controller_manager(
                self.binary("kube-controller-manager"),
                kubeconfig=self.kubeconfig,
                service_account_key=self._sa_key,
                root_ca=self.ca_path,
            ),
            self.workdir / "logs",
            detached=self.detached,
        )
        process.start()
        self.processes["kube-controller-manager"] = process

    def _start_scheduler(self) -> None:
        config = self.workdir / "scheduler.yaml"
        config.write_text(yaml.safe_dump(components.scheduler_config(self.kubeconfig)))
        process = ManagedProcess(
            "kube-scheduler",
            components.scheduler(self.binary("kube-scheduler"), config),
            self.workdir / "logs",
            detached=self.detached,
        )
        process.start()
        self.processes["kube-scheduler"] = process

    def _kwok_stages(self) -> Path:
        stages = load_yaml_documents((self.bin_dir / KWOK_STAGES).read_text())
        # Only a real process completes a pod here: KWOK would mark a Job's pod Succeeded
        # the moment it runs, before the process kubelet could even claim it.
        stages = [s for s in stages if s["metadata"]["name"] != "pod-complete"]
        for stage in stages:
            # Claimed pods are the process kubelet's to finish deleting once their
            # process has exited.
            if stage["metadata"]["name"] == "pod-delete":
                stage["spec"]["selector"]["matchExpressions"].append(
                    {
                        "key": f'.metadata.annotations["{CLAIMED_BY_PROCESS_KUBELET}"]',
                        "operator": "DoesNotExist",
                    }
                )
        path = self.workdir / "kwok-stages.yaml"
        path.write_text(yaml.safe_dump_all(stages))
        return path

    def _start_kwok(self) -> None:
        process = ManagedProcess(
            "kwok",
            components.kwok(
                self.binary("kwok"),
                stages=self._kwok_stages(),
                kubeconfig=self.kubeconfig,
                node_selector=f"{FAKE_NODE_ANNOTATION}=fake",
                port=free_port(),
            ),
            self.workdir / "logs",
            detached=self.detached,
        )
        process.start()
        self.processes["kwok"] = process

    def _create_nodes(self) -> None:
        for index in range(self.nodes):
            name = f"kwok-node-{index}"
            self.kubectl(
                "apply",
                "-f",
                "-",
                input_text=json.dumps(
                    {
                        "apiVersion": "v1",
                        "kind": "Node",
                        "metadata": {
                            "name": name,
                            "annotations": {
                                FAKE_NODE_ANNOTATION: "fake",
                                "node.alpha.kubernetes.io/ttl": "0",
                            },
                            "labels": {
                                FAKE_NODE_LABEL: "kwok",
                                "kubernetes.io/hostname": name,
                                "kubernetes.io/os": "linux",
                                "kubernetes.io/arch": "amd64",
                                "topology.kubernetes.io/zone": f"zone-{index % 3}",
                            },
                        },
                        "status": {
                            "allocatable": {"cpu": "32", "memory": "256Gi", "pods": "110"},
                            "capacity": {"cpu": "32", "memory": "256Gi", "pods": "110"},
                        },
                    }
                ),
            )
        wait_until(self._nodes_ready, 60, f"{self.nodes} KWOK nodes to be Ready")
        wait_until(
            lambda: bool(
                self.kubectl("get", "serviceaccount", "default", "-n", "default", check=False)
            ),
            60,
            "the default ServiceAccount",
        )

    def _nodes_ready(self) -> bool:
        nodes = json.loads(self.kubectl("get", "nodes", "-o", "json"))["items"]
        ready = [
            n
            for n in nodes
            for c in n.get("status", {}).get("conditions", [])
            if c["type"] == "Ready" and c["status"] == "True"
        ]
        return len(ready) >= self.nodes

    # -- use -------------------------------------------------------------------------

    def env(self) -> dict[str, str]:
        """Environment for clients of this cluster: KUBECONFIG and the binaries on PATH."""
        return {
            "KUBECONFIG": str(self.kubeconfig),
            "PATH": f"{self.bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
        }

    def kubectl(self, *args: str, input_text: str | None = None, check: bool = True) -> str:
        result = subprocess.run(
            [self.binary("kubectl"), f"--kubeconfig={self.kubeconfig}", *args],
            input=input_text,
            capture_output=True,
            text=True,
            check=False,
        )
        if check and result.returncode != 0:
            raise subprocess.CalledProcessError(
                result.returncode, ["kubectl", *args], result.stdout, result.stderr
            )
        return result.stdout if result.returncode == 0 else ""

    def create_secret(self, namespace: str, name: str, **data: str) -> None:
        self.kubectl(*secret_args(name, data), f"--namespace={namespace}")

    def helm(self, *args: str) -> str:
        """helm against this cluster; a failure raises with helm's own message."""
        result = subprocess.run(
            [self.binary("helm"), f"--kubeconfig={self.kubeconfig}", *args],
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0:
            raise RuntimeError(f"helm {args[0]} failed: {result.stderr.strip()}")
        return result.stdout

    def service_account_token(self, namespace: str, name: str, seconds: int = 3600) -> str:
        """A bound token for a ServiceAccount, to act as it (so RBAC applies)."""
        return self.kubectl(
            "create", "token", name, "-n", namespace, f"--duration={seconds}s"
        ).strip()

    def kubeconfig_for_token(self, token: str, path: Path) -> Path:
        return self.kubeconfig_for("token", {"token": token}, path)

    def kubeconfig_for(self, name: str, credentials: dict[str, str], path: Path) -> Path:
        """This cluster's kubeconfig, as another user (a token, a client certificate)."""
        config = yaml.safe_load(self.kubeconfig.read_text())
        config["users"] = [{"name": name, "user": credentials}]
        config["contexts"][0]["context"]["user"] = name
        path.write_text(yaml.safe_dump(config))
        path.chmod(0o600)
        return path

    def memory_rss_bytes(self) -> dict[str, int]:
        """Resident memory of each component, from /proc."""
        sizes: dict[str, int] = {}
        for name, process in self.processes.items():
            if process.pid is None:
                continue
            try:
                status = Path(f"/proc/{process.pid}/status").read_text()
            except FileNotFoundError:
                continue
            for line in status.splitlines():
                if line.startswith("VmRSS:"):
                    sizes[name] = int(line.split()[1]) * 1024
        return sizes

    # -- faults ----------------------------------------------------------------------

    def stop_component(self, name: str) -> None:
        """Stop one component (SIGTERM, then SIGKILL): a fault the tests inject."""
        self.processes[name].stop(grace=10)

    def start_component(self, name: str) -> None:
        """Start a stopped component again with the very same flags."""
        ready = self._api_ready if name == "kube-apiserver" else None
        self.processes[name].start(ready=ready, timeout=90)

    def pause_component(self, name: str, paused: bool) -> None:
        """SIGSTOP or SIGCONT one component: hung, not gone."""
        self.processes[name].send(signal.SIGSTOP if paused else signal.SIGCONT)

    # -- stop ------------------------------------------------------------------------

    def stop(self) -> None:
        for name in ("kwok", "kube-scheduler", "kube-controller-manager", "kube-apiserver", "etcd"):
            process = self.processes.pop(name, None)
            if process is not None:
                process.stop(grace=10)

    def destroy(self) -> None:
        self.stop()
        shutil.rmtree(self.workdir, ignore_errors=True)


def http_ok(url: str, context: ssl.SSLContext | None = None, any_reply: bool = False) -> bool:
    """Whether ``url`` answers 200 (with ``any_reply``, any HTTP answer: a server that
    refuses an anonymous probe is up)."""
    try:
        with urllib.request.urlopen(url, timeout=2, context=context) as reply:
            return bool(reply.status == 200)
    except urllib.error.HTTPError:
        return any_reply
    except OSError:
        return False


def wait_established(
    kubectl: Callable[..., str], names: Sequence[str] = (), timeout: float = 60
) -> None:
    """Wait until the named CRDs (all when none are named) are Established.

    ``kubectl wait --for=condition=Established`` fails at once, rather than waiting, on
    a CRD whose status has no conditions yet, the moment after it was created; this
    waits through that moment.
    """

    def established() -> bool:
        reply = json.loads(kubectl("get", *(names or ["crd"]), "-o", "json", check=False) or "{}")
        crds = reply.get("items", [reply] if "metadata" in reply else [])
        return len(crds) >= len(names) and all(
            any(
                condition.get("type") == "Established" and condition.get("status") == "True"
                for condition in crd.get("status", {}).get("conditions") or []
            )
            for crd in crds
        )

    wait_until(established, timeout, f"CRDs established: {', '.join(names) or 'all'}")


def secret_args(name: str, data: dict[str, str]) -> list[str]:
    """``kubectl`` arguments that create a generic Secret of literal values."""
    return [
        "create",
        "secret",
        "generic",
        name,
        *(f"--from-literal={k}={v}" for k, v in data.items()),
    ]


def load_yaml_documents(text: str) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(text) if doc]
