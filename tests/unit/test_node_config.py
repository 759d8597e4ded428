"""A real node's configuration as this machine needs it (no I/O)."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

from stalk_devenv import node_config

PATHS = node_config.NodePaths(Path("/srv/node"))


def test_containerd_uses_the_local_sandbox_image_and_debians_cni_plugins():
    config = tomllib.loads(node_config.containerd(PATHS, "localhost/pause:3.10.1"))
    cri = config["plugins"]["io.containerd.grpc.v1.cri"]
    assert cri["sandbox_image"] == "localhost/pause:3.10.1"
    assert cri["restrict_oom_score_adj"] is True, "no CAP_SYS_RESOURCE here"
    assert cri["cni"]["bin_dir"] == "/usr/lib/cni"
    runc = cri["containerd"]["runtimes"]["runc"]["options"]
    assert runc["SystemdCgroup"] is False
    assert config["grpc"]["address"] == str(PATHS.containerd_socket)


def test_pods_are_not_masqueraded_off_the_machine():
    plugins = json.loads(node_config.cni_conflist("10.244.0.0/24"))["plugins"]
    bridge = plugins[0]
    assert bridge["ipMasq"] is False
    assert bridge["ipam"]["ranges"] == [[{"subnet": "10.244.0.0/24"}]]


def test_the_kubelet_never_collects_images_it_could_not_pull_back():
    config = json.loads(
        node_config.kubelet(
            PATHS,
            client_ca=Path("/ca.crt"),
            serving_cert=Path("/k.crt"),
            serving_key=Path("/k.key"),
            address="10.77.0.1",
        )
    )
    assert config["imageGCHighThresholdPercent"] == 100
    assert (config["cgroupDriver"], config["failCgroupV1"]) == ("cgroupfs", False)
    assert config["authentication"]["anonymous"]["enabled"] is False
    assert (config["clusterDNS"], config["address"]) == (["10.77.0.1"], "10.77.0.1")


def test_kube_proxy_writes_no_conntrack_sysctls():
    config = json.loads(
        node_config.kube_proxy(Path("/kp"), "stalk-node", "10.244.0.0/16", 10249, 10256)
    )
    assert config["mode"] == "iptables"
    assert config["conntrack"]["maxPerCore"] == 0


def test_coredns_serves_only_the_cluster_domain():
    corefile = node_config.corefile("10.77.0.1", Path("/admin.kubeconfig"))
    assert "forward" not in corefile
    assert "bind 10.77.0.1" in corefile and "kubernetes cluster.local" in corefile
