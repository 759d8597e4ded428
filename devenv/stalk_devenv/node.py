"""A real node on this machine: containerd, the kubelet, kube-proxy, kube-router (for
NetworkPolicies alone) and CoreDNS as processes, running pods in real containers beside
the control plane.

The node has an address of its own on an interface of its own (pods cannot reach loopback),
where the API server, the kubelet and CoreDNS listen. Pods sit on a bridge with
addresses from ``POD_SUBNET``; a guard chain drops anything they forward beyond the
pod range, so pod traffic stays on this machine, and teardown puts IP forwarding back.
The configuration files come from :mod:`stalk_devenv.node_config`.

Use it as ``NodeNetwork().up()`` before ``ControlPlane(address=NODE_ADDRESS)``, then
``RealNode(control_plane, workdir).start()``.
"""

from __future__ import annotations

import contextlib
import json
import shlex
import subprocess
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from stalk_devenv import images, node_config
from stalk_devenv.binaries import find_addon_binary, find_node_binaries
from stalk_devenv.components import SERVICE_CIDR
from stalk_devenv.controlplane import ControlPlane
from stalk_devenv.process import ManagedProcess, free_port

NODE_ADDRESS = "10.77.0.1"
NODE_INTERFACE = "stalk-node"
POD_SUBNET = "10.244.0.0/24"
CLUSTER_CIDR = "10.244.0.0/16"
GUARD_CHAIN = "STALK-NODE-GUARD"
IP_FORWARD = Path("/proc/sys/net/ipv4/ip_forward")


def _sh(*argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, check=check)


@dataclass
class NodeNetwork:
    """The node's address, and the guard that keeps pod traffic on this machine."""

    address: str = NODE_ADDRESS
    interface: str = NODE_INTERFACE
    _forwarding: str | None = None

    def up(self) -> NodeNetwork:
        self.down()
        # A bridge with no ports: the kernel here has no dummy interfaces.
        _sh("ip", "link", "add", self.interface, "type", "bridge")
        _sh("ip", "addr", "add", f"{self.address}/32", "dev", self.interface)
        _sh("ip", "link", "set", self.interface, "up")
        self._forwarding = IP_FORWARD.read_text().strip()
        _sh("iptables", "-N", GUARD_CHAIN)
        _sh("iptables", "-A", GUARD_CHAIN, "-s", CLUSTER_CIDR, "-d", CLUSTER_CIDR, "-j", "RETURN")
        _sh("iptables", "-A", GUARD_CHAIN, "-s", CLUSTER_CIDR, "-j", "DROP")
        _sh("iptables", "-A", GUARD_CHAIN, "-d", CLUSTER_CIDR, "-j", "RETURN")
        _sh("iptables", "-I", "FORWARD", "1", "-j", GUARD_CHAIN)
        return self

    def down(self) -> None:
        _sh("ip", "link", "del", self.interface, check=False)
        while _sh("iptables", "-D", "FORWARD", "-j", GUARD_CHAIN, check=False).returncode == 0:
            pass
        _sh("iptables", "-F", GUARD_CHAIN, check=False)
        _sh("iptables", "-X", GUARD_CHAIN, check=False)
        if self._forwarding is not None:
            IP_FORWARD.write_text(self._forwarding + "\n")
            self._forwarding = None


def _timestamp(text: str) -> float:
    """An RFC 3339 time as the CRI writes it (nanoseconds, ``Z``), as a Unix time."""
    return datetime.fromisoformat(text).timestamp()


def _remove_kubelet_chains() -> None:
    """The kubelet's own iptables chains (a firewall for loopback, canaries), which no
    kubelet flag cleans up."""
    for table in ("filter", "mangle", "nat"):
        for hook in ("INPUT", "OUTPUT"):
            _sh("iptables", "-t", table, "-D", hook, "-j", "KUBE-FIREWALL", check=False)
        for chain in ("KUBE-FIREWALL", "KUBE-KUBELET-CANARY"):
            _sh("iptables", "-t", table, "-F", chain, check=False)
            _sh("iptables", "-t", table, "-X", chain, check=False)


POLICY_CHAIN_PREFIXES = ("KUBE-ROUTER-", "KUBE-POD-FW-", "KUBE-NWPLCY-")
POLICY_IPSET_PREFIXES = ("KUBE-SRC-", "KUBE-DST-", "kube-router-")


def _remove_network_policy_rules() -> None:
    """kube-router's filter chains and ipsets. Its own ``--cleanup-config`` leaves the
    chains in place under iptables' nf_tables backend and then crashes on IPVS, which
    this machine lacks."""
    rules = _sh("iptables", "-S", check=False).stdout.splitlines()
    for rule in rules:
        words = shlex.split(rule)
        if words[:2] in (["-A", "INPUT"], ["-A", "FORWARD"], ["-A", "OUTPUT"]) and any(
            word.startswith(POLICY_CHAIN_PREFIXES) for word in words
        ):
            _sh("iptables", "-D", *words[1:], check=False)
    chains = [
        words[1]
        for words in map(str.split, rules)
        if words[:1] == ["-N"] and words[1].startswith(POLICY_CHAIN_PREFIXES)
    ]
    for chain in chains:
        _sh("iptables", "-F", chain, check=False)
    for chain in chains:
        _sh("iptables", "-X", chain, check=False)
    for name in _sh("ipset", "list", "-n", check=False).stdout.split():
        if name.startswith(POLICY_IPSET_PREFIXES):
            _sh("ipset", "destroy", name, check=False)


def _policy_chains_written() -> bool:
    return _sh("iptables", "-S", "KUBE-ROUTER-FORWARD", check=False).returncode == 0


@dataclass
class RealNode:
    control_plane: ControlPlane
    workdir: Path
    name: str = "stalk-node"
    node_images: tuple[str, ...] = images.NODE_IMAGES
    processes: dict[str, ManagedProcess] = field(default_factory=dict)

    @property
    def paths(self) -> node_config.NodePaths:
        return node_config.NodePaths(self.workdir)

    @property
    def address(self) -> str:
        return self.control_plane.address

    def start(self) -> RealNode:
        self.workdir.mkdir(parents=True, exist_ok=True)
        try:
            self._bin = find_node_binaries()
            self._write_configuration()
            self._start_containerd()
            self._import_images()
            self._start_kubelet()
            self._start_kube_proxy()
            self._start_network_policy_controller()
            self._start_coredns()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Everything the node made goes: processes, containers, kube-proxy's rules and
        the mounts under its directory."""
        for name in ("coredns", "kube-router", "kube-proxy", "kubelet"):
            process = self.processes.pop(name, None)
            if process is not None:
                process.stop(grace=10)
                if name == "kube-proxy":
                    _sh(str(self._bin / "kube-proxy"), "--cleanup", check=False)
        self._remove_pods()
        process = self.processes.pop("containerd", None)
        if process is not None:
            process.stop(grace=10)
        self._unmount()
        _remove_kubelet_chains()
        _remove_network_policy_rules()

    def _unmount(self) -> None:
        root = str(self.workdir.resolve())
        mounts = [line.split()[1] for line in Path("/proc/mounts").read_text().splitlines()]
        for mount in sorted((m for m in mounts if m.startswith(root)), reverse=True):
            _sh("umount", "-l", mount, check=False)

    # -- configuration ---------------------------------------------------------------

    def _write_configuration(self) -> None:
        paths, cp = self.paths, self.control_plane
        paths.cni_conf_dir.mkdir(parents=True, exist_ok=True)
        paths.containerd_socket.parent.mkdir(parents=True, exist_ok=True)
        paths.containerd_config.write_text(node_config.containerd(paths, images.PAUSE_IMAGE))
        (paths.cni_conf_dir / "10-stalk.conflist").write_text(node_config.cni_conflist(POD_SUBNET))
        kubelet_client = cp.ca.issue(
            f"kubelet-{self.name}",
            common_name=f"system:node:{self.name}",
            organizations=("system:nodes",),
            client=True,
        )
        serving = cp.ca.issue(
            f"kubelet-{self.name}-serving",
            common_name=self.name,
            dns_names=(self.name,),
            ip_addresses=(self.address,),
            server=True,
        )
        proxy = cp.ca.issue("kube-proxy", common_name="system:kube-proxy", client=True)
        self._kubeconfigs = {
            "kubelet": self._kubeconfig("kubelet", kubelet_client.cert, kubelet_client.key),
            "kube-proxy": self._kubeconfig("kube-proxy", proxy.cert, proxy.key),
        }
        paths.kubelet_config.write_text(
            node_config.kubelet(
                paths,
                client_ca=cp.ca_path,
                serving_cert=serving.cert,
                serving_key=serving.key,
                address=self.address,
            )
        )
        paths.kube_proxy_config.write_text(
            node_config.kube_proxy(
                self._kubeconfigs["kube-proxy"], self.name, CLUSTER_CIDR, free_port(), free_port()
            )
        )
        paths.corefile.write_text(node_config.corefile(self.address, cp.kubeconfig))
        # The API server asks kubelets for logs and exec as this user.
        cp.kubectl(
            "create",
            "clusterrolebinding",
            "devenv-apiserver-kubelet-client",
            "--clusterrole=system:kubelet-api-admin",
            "--user=kube-apiserver-kubelet-client",
            check=False,
        )

    def _kubeconfig(self, name: str, cert: Path, key: Path) -> Path:
        credentials = {"client-certificate": str(cert), "client-key": str(key)}
        return self.control_plane.kubeconfig_for(
            name, credentials, self.workdir / f"{name}.kubeconfig"
        )

    # -- processes -------------------------------------------------------------------

    def _process(self, name: str, argv: list[str]) -> ManagedProcess:
        process = ManagedProcess(name, argv, self.workdir / "logs")
        self.processes[name] = process
        return process

    def _start_containerd(self) -> None:
        self._process("containerd", ["containerd", "--config", str(self.paths.containerd_config)])
        self.processes["containerd"].start(ready=self.paths.containerd_socket.exists, timeout=30)

    def ctr(self, *args: str) -> str:
        return _sh(
            "ctr", "--address", str(self.paths.containerd_socket), "-n", "k8s.io", *args
        ).stdout

    def _import_images(self) -> None:
        archives = self.workdir / "images"
        archives.mkdir(exist_ok=True)
        for image in self.node_images:
            self.ctr("images", "import", str(images.export(image, archives)))

    def _start_kubelet(self) -> None:
        self._process(
            "kubelet",
            [
                str(self._bin / "kubelet"),
                f"--config={self.paths.kubelet_config}",
                f"--kubeconfig={self._kubeconfigs['kubelet']}",
                f"--hostname-override={self.name}",
                f"--node-ip={self.address}",
                f"--root-dir={self.workdir / 'kubelet'}",
                "--v=1",
            ],
        ).start(ready=self._node_ready, timeout=90)

    def _node_ready(self) -> bool:
        node = self.control_plane.kubectl("get", "node", self.name, "-o", "json", check=False)
        conditions = json.loads(node or "{}").get("status", {}).get("conditions", [])
        return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)

    def _start_kube_proxy(self) -> None:
        self._process(
            "kube-proxy",
            [str(self._bin / "kube-proxy"), f"--config={self.paths.kube_proxy_config}"],
        ).start()

    def _start_network_policy_controller(self) -> None:
        """kube-router's NetworkPolicy controller alone (no routing, no service proxy):
        the bridge CNI enforces no policy, so without it a NetworkPolicy is only text.
        Ready once its first full sync has written the policy chains."""
        process = self._process(
            "kube-router",
            [
                str(find_addon_binary("kube-router")),
                f"--kubeconfig={self.control_plane.kubeconfig}",
                f"--hostname-override={self.name}",
                "--run-firewall=true",
                "--run-router=false",
                "--run-service-proxy=false",
                f"--service-cluster-ip-range={SERVICE_CIDR}",
                "--metrics-port=0",
                f"--health-port={free_port()}",
                "--v=1",
            ],
        )
        process.start(ready=_policy_chains_written, timeout=60)

    def _start_coredns(self) -> None:
        process = self._process(
            "coredns", [str(self._bin / "coredns"), "-conf", str(self.paths.corefile)]
        )
        process.start(ready=lambda: "CoreDNS-" in process.log_tail(), timeout=30)

    def crictl(self, *args: str) -> str:
        """``crictl`` against this node's containerd; its output ('' on failure)."""
        socket = f"unix://{self.paths.containerd_socket}"
        return _sh(
            str(self._bin / "crictl"), f"--runtime-endpoint={socket}", *args, check=False
        ).stdout

    def pod_start(self, namespace: str, pod: str) -> dict[str, float]:
        """When the runtime made the pod's sandbox and created and started each of its
        containers (wall clock, from containerd's nanosecond timestamps): the steps the
        API shows only to the second, or late."""
        times: dict[str, float] = {}
        for sandbox in self.crictl("pods", "--namespace", namespace, "--name", pod, "-q").split():
            status = json.loads(self.crictl("inspectp", sandbox) or "{}").get("status", {})
            if status.get("metadata", {}).get("name") != pod:
                continue
            times["sandbox"] = _timestamp(status["createdAt"])
            for container in self.crictl("ps", "-a", "--pod", sandbox, "-q").split():
                state = json.loads(self.crictl("inspect", container) or "{}").get("status", {})
                name = state.get("metadata", {}).get("name", container)
                for event in ("created", "started", "finished"):
                    stamp = state.get(f"{event}At", "")
                    if stamp and not stamp.startswith("1970"):
                        times[f"{name} {event}"] = _timestamp(stamp)
        return times

    def _remove_pods(self) -> None:
        """Every container the node ran goes with it (containerd keeps them otherwise)."""
        if "containerd" not in self.processes:
            return
        with contextlib.suppress(subprocess.SubprocessError, OSError):
            for pod in self.crictl("pods", "-q").split():
                self.crictl("stopp", pod)
                self.crictl("rmp", pod)
