"""A whole cluster whose pods run in real containers: the node's network, the control
plane listening on the node's address, the real node, and volumes for the claims a chart
makes. What runs where is in docs/architecture.md.

``unavailable()`` says why this machine cannot run one (or ``None``): the tests skip with
that reason and the demo falls back to the process kubelet.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from stalk_config import conventions

from stalk_devenv import images
from stalk_devenv.binaries import (
    ADDON_BINARIES,
    BinariesMissingError,
    find_addon_binary,
    find_binaries,
    find_node_binaries,
)
from stalk_devenv.controlplane import ControlPlane
from stalk_devenv.node import NODE_ADDRESS, NodeNetwork, RealNode

HOST_TOOLS = ("containerd", "runc", "buildah", "ctr", "iptables", "ipset", "debootstrap")


def unavailable() -> str | None:
    """Why a real node cannot run here, or ``None`` when it can."""
    if os.geteuid() != 0:
        return "a real node needs root (containerd, iptables, mounts)"
    missing = [tool for tool in HOST_TOOLS if not shutil.which(tool)]
    if missing:
        return f"a real node needs {', '.join(missing)} (hack/setup.sh installs them as root)"
    if not Path("/opt/cni/bin/bridge").exists() and not Path("/usr/lib/cni/bridge").exists():
        return "a real node needs the CNI plugins (containernetworking-plugins)"
    try:
        find_binaries()
        find_node_binaries()
        for name in ADDON_BINARIES:
            find_addon_binary(name)
    except BinariesMissingError as exc:
        return str(exc)
    return None


def chart_values() -> list[str]:
    """``helm`` flags pointing the chart at the images built here; everything else stays
    the chart's default. ``Never`` pull: nothing can be pulled here, and a missing image
    should fail at once rather than back off."""
    flags: list[str] = []
    for key, image in (
        ("operator.image", images.OPERATOR_IMAGE),
        ("worker.image", images.WORKER_IMAGE),
        ("redis.image", images.REDIS_IMAGE),
    ):
        repository, tag = image.rsplit(":", 1)
        flags += [
            f"--set={key}.repository={repository}",
            f"--set={key}.tag={tag}",
            f"--set={key}.pullPolicy=Never",
        ]
    return flags


@dataclass
class RealCluster:
    """``start()`` builds what is missing, then brings everything up; ``stop()`` takes it
    all down again, network and iptables rules included."""

    workdir: Path
    api_extensions: tuple[Path, ...] = ()
    volumes: int = 3
    """hostPath PersistentVolumes of no class, for the claims of a chart with persistence
    on (there is no provisioner here); a claim with no class binds to one of them."""
    volume_size: str = "1Gi"
    network: NodeNetwork = field(default_factory=NodeNetwork)
    control_plane: ControlPlane | None = None
    node: RealNode | None = None

    def start(self) -> RealCluster:
        images.build()
        self.network.up()
        try:
            self.control_plane = ControlPlane(
                self.workdir / "cluster",
                bin_dir=find_binaries(),
                address=NODE_ADDRESS,
                nodes=0,
                api_extensions=self.api_extensions,
            ).start()
            self.node = RealNode(self.control_plane, self.workdir / "node").start()
            self._create_volumes()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        if self.node is not None:
            self.node.stop()
            self.node = None
        if self.control_plane is not None:
            self.control_plane.stop()
            self.control_plane = None
        self.network.down()

    def _create_volumes(self) -> None:
        assert self.control_plane is not None
        uid = conventions.RUNTIME_UID
        for index in range(self.volumes):
            path = self.workdir / "volumes" / f"pv-{index}"
            path.mkdir(parents=True, exist_ok=True)
            # hostPath volumes get no fsGroup: the directory is the pods' own from the start.
            os.chown(path, uid, uid)
            volume = {
                "apiVersion": "v1",
                "kind": "PersistentVolume",
                "metadata": {"name": f"devenv-local-{index}"},
                "spec": {
                    "capacity": {"storage": self.volume_size},
                    "accessModes": ["ReadWriteOnce"],
                    "persistentVolumeReclaimPolicy": "Retain",
                    "hostPath": {"path": str(path.resolve()), "type": "Directory"},
                },
            }
            self.control_plane.kubectl("apply", "-f", "-", input_text=json.dumps(volume))
