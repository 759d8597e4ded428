"""Pods in real containers: containerd, runc and the kubelet on a node of this machine,
the images built here from the repository's Dockerfiles. Work in progress (the issue
"Real containers"); ``make test-realnode`` runs these."""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from kube import wait_for
from stalk_devenv import images
from stalk_devenv.binaries import BinariesMissingError, find_binaries, find_node_binaries
from stalk_devenv.controlplane import ControlPlane
from stalk_devenv.node import NODE_ADDRESS, NodeNetwork, RealNode
from stalk_devenv.stack import CRDS

pytestmark = [pytest.mark.e2e, pytest.mark.realnode]


@pytest.fixture(scope="module")
def real_node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RealNode]:
    missing = [tool for tool in ("containerd", "runc", "buildah", "ctr") if not shutil.which(tool)]
    if os.geteuid() != 0 or missing:
        pytest.skip(f"a real node needs root and {', '.join(missing) or 'nothing more'}")
    try:
        find_node_binaries()
        bin_dir = find_binaries()
    except BinariesMissingError as exc:
        pytest.skip(str(exc))
    images.build()
    workdir = tmp_path_factory.mktemp("realnode")
    network = NodeNetwork().up()
    control_plane = node = None
    try:
        control_plane = ControlPlane(
            workdir / "cluster", bin_dir=bin_dir, address=NODE_ADDRESS, nodes=0, api_extensions=CRDS
        ).start()
        node = RealNode(control_plane, workdir / "node").start()
        yield node
    finally:
        if node is not None:
            node.stop()
        if control_plane is not None:
            control_plane.stop()
        network.down()


def run_pod(control_plane: ControlPlane, name: str, command: list[str]) -> tuple[str, str]:
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {
            "restartPolicy": "Never",
            "containers": [
                {
                    "name": "main",
                    "image": images.WORKER_IMAGE,
                    "imagePullPolicy": "Never",
                    "command": command,
                }
            ],
        },
    }
    control_plane.kubectl("apply", "-f", "-", input_text=json.dumps(pod))

    def phase() -> str | None:
        found = json.loads(control_plane.kubectl("get", "pod", name, "-o", "json") or "{}")
        return found.get("status", {}).get("phase")

    wait_for(lambda: phase() in ("Succeeded", "Failed"), 60, f"pod {name} to finish")
    return phase() or "", control_plane.kubectl("logs", name, check=False)


def test_a_pod_of_the_worker_image_runs_in_a_real_container(real_node: RealNode):
    started = time.monotonic()
    phase, log = run_pod(
        real_node.control_plane,
        "hello",
        ["python", "-c", "import os, socket; print(os.getuid(), socket.gethostname())"],
    )
    print(f"\npod of the worker image: done in {time.monotonic() - started:.1f}s")
    assert (phase, log.split()) == ("Succeeded", ["10001", "hello"])


def test_pods_resolve_cluster_names_and_reach_services(real_node: RealNode):
    """CoreDNS serves cluster.local; kube-proxy takes the ``kubernetes`` Service to the
    API server on the node's address."""
    script = (
        "import socket, ssl;"
        "address = socket.gethostbyname('kubernetes.default.svc.cluster.local');"
        "socket.create_connection((address, 443), timeout=5).close();"
        "print(address)"
    )
    phase, log = run_pod(real_node.control_plane, "dns", ["python", "-c", script])
    assert (phase, log.strip()) == ("Succeeded", "10.96.0.1"), log


def test_the_node_leaves_no_network_behind(tmp_path: Path):
    network = NodeNetwork(interface="stalk-probe", address="10.77.9.1").up()
    network.down()
    assert "stalk-probe" not in Path("/proc/net/dev").read_text()
