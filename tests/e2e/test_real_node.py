"""Pods in real containers: containerd, runc and the kubelet on a node of this machine,
running the images built here from the repository's Dockerfiles."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from kube import Cluster
from stalk_devenv import images
from stalk_devenv.node import NodeNetwork

pytestmark = [pytest.mark.e2e, pytest.mark.realnode]


def test_the_worker_image_runs_every_task_module_as_its_own_user(real_kube: Cluster):
    """What the chart's worker pods get: uid 10001, a read-only root filesystem, every
    task the repository's app registers, and no operator code."""
    script = (
        "import importlib.util, json, os;"
        "from stalk_worker.app import app;"
        "app.loader.import_default_modules();"
        "print(json.dumps({'uid': os.getuid(),"
        " 'tasks': sorted(t for t in app.tasks if not t.startswith('celery.')),"
        " 'kopf': importlib.util.find_spec('kopf') is not None,"
        " 'root_writable': os.access('/', os.W_OK)}))"
    )
    started = time.monotonic()
    phase, log = real_kube.run_pod("worker-image", images.WORKER_IMAGE, ["python", "-c", script])
    print(f"\npod of the worker image: done in {time.monotonic() - started:.1f}s")
    assert phase == "Succeeded", log
    found = json.loads(log.strip().splitlines()[-1])
    assert found["tasks"] == registered_here()
    assert (found["uid"], found["kopf"], found["root_writable"]) == (10001, False, False)


def registered_here() -> list[str]:
    """The tasks the repository's own worker app registers, loaded in this process."""
    from stalk_worker.app import app

    app.loader.import_default_modules()
    return sorted(t for t in app.tasks if not t.startswith("celery."))


def test_pods_resolve_cluster_names_and_reach_services(real_kube: Cluster):
    """CoreDNS serves cluster.local; kube-proxy takes the ``kubernetes`` Service to the
    API server on the node's address."""
    script = (
        "import socket;"
        "address = socket.gethostbyname('kubernetes.default.svc.cluster.local');"
        "socket.create_connection((address, 443), timeout=5).close();"
        "print(address)"
    )
    phase, log = real_kube.run_pod("dns", images.WORKER_IMAGE, ["python", "-c", script])
    assert (phase, log.strip()) == ("Succeeded", "10.96.0.1"), log


def test_the_node_leaves_no_network_behind(tmp_path: Path):
    network = NodeNetwork(interface="stalk-probe", address="10.77.9.1").up()
    network.down()
    assert "stalk-probe" not in Path("/proc/net/dev").read_text()
