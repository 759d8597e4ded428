"""KEDA beside Stalk on the local control plane: its operator and metrics adapter as processes.

Built from its Go module (:data:`stalk_devenv.binaries.KEDA_VERSIONS`) and run the way
its release manifests run it, with three differences a process on this machine needs:

* Both listen on loopback, and one certificate authority of KEDA's own (what its
  ``kedaorg-certs`` Secret holds) signs the one certificate they share for the metrics
  gRPC service between them and for the adapter's serving port.
* ``v1beta1.external.metrics.k8s.io`` points at a Service of type ExternalName
  (``localhost``): the aggregator resolves such a Service to its name and port, so the
  HPA controller reaches the adapter through the API server as in a cluster.
* Both use the admin kubeconfig rather than KEDA's ServiceAccounts: this is a benchmark
  of scaling, and KEDA's RBAC is not what it compares.

The HPA controller in kube-controller-manager runs with its defaults (15 s sync), as a
cluster's does.
"""

from __future__ import annotations

import base64
import json
import ssl
from dataclasses import dataclass, field
from pathlib import Path

from stalk_devenv.binaries import KEDA_CRDS, find_keda_binaries
from stalk_devenv.controlplane import ControlPlane, http_ok, wait_established
from stalk_devenv.pki import CertificateAuthority
from stalk_devenv.process import ManagedProcess, free_port, wait_until

NAMESPACE = "keda"
ADAPTER_SERVICE = "keda-metrics-apiserver"
EXTERNAL_METRICS = "v1beta1.external.metrics.k8s.io"


@dataclass
class Keda:
    """KEDA on one :class:`ControlPlane`; ``start()`` returns once the external metrics
    API is Available through the aggregator."""

    control_plane: ControlPlane
    workdir: Path
    bin_dir: Path = field(default_factory=find_keda_binaries)
    processes: dict[str, ManagedProcess] = field(default_factory=dict)

    def start(self) -> Keda:
        self.workdir.mkdir(parents=True, exist_ok=True)
        try:
            self._install_crds()
            certs = self._issue_certificates()
            grpc = f"127.0.0.1:{free_port()}"
            self._start_operator(certs, grpc)
            adapter_port = self._start_adapter(certs, grpc)
            self._register_adapter(certs, adapter_port)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        for process in reversed(list(self.processes.values())):
            process.stop(grace=5)

    def log(self, name: str) -> str:
        return self.processes[name].log_path.read_text(errors="replace")

    # -- start -----------------------------------------------------------------------

    def _install_crds(self) -> None:
        kubectl = self.control_plane.kubectl
        kubectl("create", "namespace", NAMESPACE)
        # Server-side: KEDA's ScaledObject CRD is larger than client-side apply's
        # last-applied annotation may be.
        kubectl("apply", "--server-side", "-f", str(self.bin_dir / KEDA_CRDS))
        wait_established(kubectl)

    def _issue_certificates(self) -> Path:
        """ca.crt, tls.crt and tls.key in one directory, as KEDA mounts its Secret."""
        directory = self.workdir / "certs"
        ca = CertificateAuthority(directory, name="KEDA")
        ca.issue(
            "tls",
            # Not the CA's name in any case: OpenSSL compares names case-blind, and
            # would take the leaf for self-signed.
            common_name="keda-operator",
            dns_names=(
                "localhost",
                f"keda-operator.{NAMESPACE}.svc",
                f"{ADAPTER_SERVICE}.{NAMESPACE}.svc",
            ),
            ip_addresses=("127.0.0.1",),
            server=True,
            client=True,
        )
        return directory

    def _env(self) -> dict[str, str]:
        return {
            "KUBECONFIG": str(self.control_plane.kubeconfig),
            "WATCH_NAMESPACE": "",
            "POD_NAMESPACE": NAMESPACE,
            "KEDA_CLUSTER_OBJECT_NAMESPACE": NAMESPACE,
        }

    def _start_operator(self, certs: Path, grpc: str) -> None:
        probes = free_port()
        process = ManagedProcess(
            "keda-operator",
            [
                str(self.bin_dir / "keda-operator"),
                "--leader-elect=false",
                f"--metrics-bind-address=127.0.0.1:{free_port()}",
                f"--health-probe-bind-address=127.0.0.1:{probes}",
                f"--metrics-service-bind-address={grpc}",
                f"--cert-dir={certs}",
                f"--ca-dir={certs}",
                "--zap-log-level=info",
            ],
            self.workdir / "logs",
            env=self._env(),
        )
        process.start(ready=lambda: http_ok(f"http://127.0.0.1:{probes}/readyz"), timeout=60)
        self.processes["keda-operator"] = process

    def _start_adapter(self, certs: Path, grpc: str) -> int:
        port = free_port()
        kubeconfig = str(self.control_plane.kubeconfig)
        process = ManagedProcess(
            "keda-adapter",
            [
                str(self.bin_dir / "keda-adapter"),
                "--bind-address=127.0.0.1",
                f"--secure-port={port}",
                f"--port={free_port()}",
                f"--cert-dir={certs}",
                f"--tls-cert-file={certs / 'tls.crt'}",
                f"--tls-private-key-file={certs / 'tls.key'}",
                f"--client-ca-file={certs / 'ca.crt'}",
                f"--lister-kubeconfig={kubeconfig}",
                f"--authentication-kubeconfig={kubeconfig}",
                f"--authorization-kubeconfig={kubeconfig}",
                f"--metrics-service-address={grpc}",
                "--zap-log-level=info",
            ],
            self.workdir / "logs",
            env=self._env(),
        )
        context = ssl.create_default_context(cafile=str(certs / "ca.crt"))
        process.start(
            ready=lambda: http_ok(f"https://127.0.0.1:{port}/readyz", context, any_reply=True),
            timeout=60,
        )
        self.processes["keda-adapter"] = process
        return port

    def _register_adapter(self, certs: Path, port: int) -> None:
        service = {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": ADAPTER_SERVICE, "namespace": NAMESPACE},
            "spec": {
                "type": "ExternalName",
                "externalName": "localhost",
                "ports": [{"name": "https", "port": port}],
            },
        }
        api_service = {
            "apiVersion": "apiregistration.k8s.io/v1",
            "kind": "APIService",
            "metadata": {"name": EXTERNAL_METRICS},
            "spec": {
                "service": {"name": ADAPTER_SERVICE, "namespace": NAMESPACE, "port": port},
                "group": "external.metrics.k8s.io",
                "version": "v1beta1",
                "caBundle": base64.b64encode((certs / "ca.crt").read_bytes()).decode(),
                "groupPriorityMinimum": 100,
                "versionPriority": 100,
            },
        }
        for manifest in (service, api_service):
            self.control_plane.kubectl("apply", "-f", "-", input_text=json.dumps(manifest))
        wait_until(self._external_metrics_available, 60, f"{EXTERNAL_METRICS} to be Available")

    def _external_metrics_available(self) -> bool:
        reply = self.control_plane.kubectl(
            "get", "apiservice", EXTERNAL_METRICS, "-o", "json", check=False
        )
        if not reply:
            return False
        conditions = json.loads(reply).get("status", {}).get("conditions", [])
        return any(c["type"] == "Available" and c["status"] == "True" for c in conditions)
