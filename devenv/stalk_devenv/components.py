"""The command line of each control-plane component, one builder per component. Pure.

Everything listens on loopback, or on the address of a real node's control plane
(``ControlPlane.address``), which pods reach through the ``kubernetes`` Service. The
flags that matter, and why:

* etcd without fsync: the cluster is thrown away after each run.
* kube-apiserver: client certificates for the admin, ServiceAccount tokens for everyone
  else, RBAC enforced, so what the operator's ServiceAccount may do is what it gets.
* kube-apiserver, as an aggregator: a front-proxy CA and client certificate of their
  own (the requestheader flags), so that an extension API server such as KEDA's metrics
  adapter can serve ``external.metrics.k8s.io`` behind it, as in a kubeadm cluster.
* kube-controller-manager: every controller a cluster without a cloud runs; the ones for
  node IPAM, cloud routes, volumes and certificate signing are off (nothing here needs
  them, and some would fail without a cloud).
* KWOK: manages only the fake nodes (by annotation) and renews their leases as a kubelet
  does; without that the node lifecycle controller marks every pod NotReady after ~50 s.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

SERVICE_CIDR = "10.96.0.0/16"
POD_CIDR = "10.244.0.1/16"
SERVICE_ACCOUNT_ISSUER = "https://kubernetes.default.svc.cluster.local"
DISABLED_CONTROLLERS = (
    "nodeipam",
    "cloud-node-lifecycle",
    "route",
    "service",
    "attachdetach",
    "persistentvolume-expander",
    "ephemeral-volume",
    "bootstrapsigner",
    "tokencleaner",
    "csrsigning",
    "csrapproving",
)


class KeyPair(Protocol):
    @property
    def cert(self) -> Path: ...
    @property
    def key(self) -> Path: ...


def etcd(binary: str, data_dir: Path, client_port: int, peer_port: int) -> list[str]:
    client, peer = f"http://127.0.0.1:{client_port}", f"http://127.0.0.1:{peer_port}"
    return [
        binary,
        "--name=devenv",
        f"--data-dir={data_dir}",
        f"--listen-client-urls={client}",
        f"--advertise-client-urls={client}",
        f"--listen-peer-urls={peer}",
        f"--initial-advertise-peer-urls={peer}",
        f"--initial-cluster=devenv={peer}",
        "--unsafe-no-fsync",
        "--log-level=warn",
        "--quota-backend-bytes=2147483648",
    ]


def apiserver(
    binary: str,
    *,
    etcd_url: str,
    port: int,
    serving: KeyPair,
    client_ca: Path,
    service_account_key: Path,
    service_account_public_key: Path,
    address: str = "127.0.0.1",
    kubelet_client: KeyPair | None = None,
    front_proxy: KeyPair | None = None,
    front_proxy_ca: Path | None = None,
) -> list[str]:
    aggregation = (
        [
            f"--requestheader-client-ca-file={front_proxy_ca}",
            "--requestheader-allowed-names=front-proxy-client",
            "--requestheader-username-headers=X-Remote-User",
            "--requestheader-group-headers=X-Remote-Group",
            "--requestheader-extra-headers-prefix=X-Remote-Extra-",
            f"--proxy-client-cert-file={front_proxy.cert}",
            f"--proxy-client-key-file={front_proxy.key}",
        ]
        if front_proxy is not None and front_proxy_ca is not None
        else []
    )
    kubelets = (
        [
            f"--kubelet-client-certificate={kubelet_client.cert}",
            f"--kubelet-client-key={kubelet_client.key}",
            "--kubelet-preferred-address-types=InternalIP",
        ]
        if kubelet_client is not None
        else []
    )
    return [
        binary,
        f"--etcd-servers={etcd_url}",
        f"--bind-address={address}",
        f"--advertise-address={address}",
        f"--secure-port={port}",
        f"--tls-cert-file={serving.cert}",
        f"--tls-private-key-file={serving.key}",
        f"--client-ca-file={client_ca}",
        f"--service-account-key-file={service_account_public_key}",
        f"--service-account-signing-key-file={service_account_key}",
        f"--service-account-issuer={SERVICE_ACCOUNT_ISSUER}",
        f"--api-audiences={SERVICE_ACCOUNT_ISSUER}",
        "--authorization-mode=Node,RBAC",
        f"--service-cluster-ip-range={SERVICE_CIDR}",
        "--allow-privileged=true",
        "--enable-priority-and-fairness=false",
        "--profiling=false",
        "--watch-cache=true",
        "--v=1",
        *kubelets,
        *aggregation,
    ]


def controller_manager(
    binary: str, *, kubeconfig: Path, service_account_key: Path, root_ca: Path
) -> list[str]:
    return [
        binary,
        f"--kubeconfig={kubeconfig}",
        f"--authentication-kubeconfig={kubeconfig}",
        f"--authorization-kubeconfig={kubeconfig}",
        "--leader-elect=false",
        "--secure-port=0",
        f"--service-account-private-key-file={service_account_key}",
        f"--root-ca-file={root_ca}",
        "--use-service-account-credentials=false",
        "--controllers=*," + ",".join(f"-{c}" for c in DISABLED_CONTROLLERS),
        "--concurrent-deployment-syncs=10",
        "--concurrent-replicaset-syncs=10",
        "--v=1",
    ]


def scheduler_config(kubeconfig: Path) -> dict[str, Any]:
    return {
        "apiVersion": "kubescheduler.config.k8s.io/v1",
        "kind": "KubeSchedulerConfiguration",
        "clientConnection": {"kubeconfig": str(kubeconfig), "qps": 200, "burst": 400},
        "leaderElection": {"leaderElect": False},
    }


def scheduler(binary: str, config: Path) -> list[str]:
    return [binary, f"--config={config}", "--secure-port=0", "--v=1"]


def kwok(
    binary: str, *, stages: Path, kubeconfig: Path, node_selector: str, port: int
) -> list[str]:
    return [
        binary,
        f"--config={stages}",
        f"--kubeconfig={kubeconfig}",
        "--manage-all-nodes=false",
        f"--manage-nodes-with-annotation-selector={node_selector}",
        f"--cidr={POD_CIDR}",
        "--node-ip=10.0.0.1",
        "--node-lease-duration-seconds=40",
        f"--server-address=127.0.0.1:{port}",
    ]
