"""The configuration files of a real node on this machine. Pure: text from paths and
addresses; :mod:`stalk_devenv.node` writes them and runs the processes.

What this machine dictates, and why each setting is here:

* cgroups v1 without systemd: the kubelet and runc use ``cgroupfs``, and the kubelet is
  told v1 is acceptable (``failCgroupV1: false``; 1.34 still runs on it, with a warning).
* No CAP_SYS_RESOURCE: runc cannot give a sandbox a negative ``oom_score_adj``, so
  containerd's CRI plugin restricts it (``restrict_oom_score_adj``), and the kubelet and
  kube-proxy keep their own at 0.
* No registry: the sandbox image is built here under the name containerd looks for, and
  the kubelet never garbage-collects images (it could not pull them back).
* Debian installs the CNI plugins under ``/usr/lib/cni``. Pods get addresses from a
  bridge on this machine only; nothing is masqueraded and nothing routes off it.
* No sysctl writes the machine refuses: conntrack limits and timeouts are left alone.
* Eviction is off: a development machine's disk and memory figures are not the pods'.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

CNI_BIN_DIR = Path("/usr/lib/cni")
CLUSTER_DOMAIN = "cluster.local"


@dataclass(frozen=True)
class NodePaths:
    """Everything a node writes, under one directory of its own."""

    root: Path

    @property
    def containerd_config(self) -> Path:
        return self.root / "containerd.toml"

    @property
    def containerd_socket(self) -> Path:
        return self.root / "run" / "containerd.sock"

    @property
    def cni_conf_dir(self) -> Path:
        return self.root / "cni"

    @property
    def kubelet_config(self) -> Path:
        return self.root / "kubelet.yaml"

    @property
    def kube_proxy_config(self) -> Path:
        return self.root / "kube-proxy.yaml"

    @property
    def corefile(self) -> Path:
        return self.root / "Corefile"


def containerd(paths: NodePaths, sandbox_image: str) -> str:
    return f"""version = 2
root = "{paths.root / "containerd"}"
state = "{paths.root / "run" / "containerd"}"

[grpc]
  address = "{paths.containerd_socket}"

[plugins."io.containerd.internal.v1.opt"]
  path = "{paths.root / "opt"}"

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{sandbox_image}"
  restrict_oom_score_adj = true
  netns_mounts_under_state_dir = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        BinaryName = "/usr/sbin/runc"
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "{CNI_BIN_DIR}"
    conf_dir = "{paths.cni_conf_dir}"
"""


def cni_conflist(pod_subnet: str, bridge: str = "stalk0") -> str:
    """A bridge with host-local addresses; the gateway is on this machine, no masquerade."""
    return json.dumps(
        {
            "cniVersion": "1.0.0",
            "name": "stalk-pods",
            "plugins": [
                {
                    "type": "bridge",
                    "bridge": bridge,
                    "isGateway": True,
                    "ipMasq": False,
                    "hairpinMode": True,
                    "ipam": {
                        "type": "host-local",
                        "ranges": [[{"subnet": pod_subnet}]],
                        "routes": [{"dst": "0.0.0.0/0"}],
                    },
                },
                {"type": "portmap", "capabilities": {"portMappings": True}},
            ],
        },
        indent=2,
    )


def kubelet(
    paths: NodePaths, *, client_ca: Path, serving_cert: Path, serving_key: Path, address: str
) -> str:
    """The kubelet listens on the node's address only (where the API server reaches it),
    and points pods at CoreDNS on the same address."""
    return json.dumps(
        {
            "apiVersion": "kubelet.config.k8s.io/v1beta1",
            "kind": "KubeletConfiguration",
            "cgroupDriver": "cgroupfs",
            "failCgroupV1": False,
            "containerRuntimeEndpoint": f"unix://{paths.containerd_socket}",
            "authentication": {
                "anonymous": {"enabled": False},
                "webhook": {"enabled": True, "cacheTTL": "2m"},
                "x509": {"clientCAFile": str(client_ca)},
            },
            "authorization": {"mode": "Webhook"},
            "clusterDomain": CLUSTER_DOMAIN,
            "clusterDNS": [address],
            "resolvConf": "/etc/resolv.conf",
            "serverTLSBootstrap": False,
            "rotateCertificates": False,
            "tlsCertFile": str(serving_cert),
            "tlsPrivateKeyFile": str(serving_key),
            "failSwapOn": False,
            "oomScoreAdj": 0,
            "evictionHard": {
                "memory.available": "0%",
                "nodefs.available": "0%",
                "nodefs.inodesFree": "0%",
                "imagefs.available": "0%",
            },
            "imageGCHighThresholdPercent": 100,
            "imageGCLowThresholdPercent": 99,
            "address": address,
            "port": 10250,
            "readOnlyPort": 0,
            "healthzPort": 0,
        },
        indent=2,
    )


def kube_proxy(
    kubeconfig: Path, node_name: str, cluster_cidr: str, metrics_port: int, healthz_port: int
) -> str:
    return json.dumps(
        {
            "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
            "kind": "KubeProxyConfiguration",
            "clientConnection": {"kubeconfig": str(kubeconfig)},
            "mode": "iptables",
            "hostnameOverride": node_name,
            "clusterCIDR": cluster_cidr,
            "nodePortAddresses": ["primary"],
            "iptables": {"localhostNodePorts": False},
            "oomScoreAdj": 0,
            "conntrack": {
                "maxPerCore": 0,
                "min": 0,
                "tcpEstablishedTimeout": "0s",
                "tcpCloseWaitTimeout": "0s",
            },
            "metricsBindAddress": f"127.0.0.1:{metrics_port}",
            "healthzBindAddress": f"127.0.0.1:{healthz_port}",
        },
        indent=2,
    )


def corefile(address: str, kubeconfig: Path) -> str:
    """cluster.local from the API, nothing forwarded (there is no upstream here): other
    names are refused at once rather than timed out."""
    return f"""{CLUSTER_DOMAIN}:53 in-addr.arpa:53 ip6.arpa:53 {{
    bind {address}
    errors
    kubernetes {CLUSTER_DOMAIN} in-addr.arpa ip6.arpa {{
        kubeconfig {kubeconfig}
        pods insecure
        ttl 30
    }}
    cache 30
    loadbalance
}}
"""
