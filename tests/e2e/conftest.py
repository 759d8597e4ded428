"""The e2e fixtures: a real Kubernetes API, a namespace per test, the process kubelet.

By default a local control plane (stalk_devenv.controlplane) is started once per session.
With ``STALK_E2E_CLUSTER=current`` the tests use the cluster ``KUBECONFIG`` points at
(e.g. kind) instead; tests that need the process kubelet are skipped there, since real
kubelets run the pods.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from kube import Cluster, require_binaries, wait_for
from stalk_devenv.controlplane import ControlPlane
from stalk_devenv.kubelet import ProcessKubelet
from stalk_devenv.real_cluster import RealCluster, unavailable
from stalk_devenv.stack import (
    ADMISSION_POLICY,
    CRDS,
    OperatorProcess,
    grant_operator,
    prefixed,
    revoke_operator,
    wait_for_admission_policy,
)

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="session")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    if os.environ.get("STALK_E2E_CLUSTER") == "current":
        kubeconfig = Path(os.environ.get("KUBECONFIG", Path.home() / ".kube" / "config"))
        yield Cluster(kubeconfig, "kubectl", None)
        return
    bin_dir = require_binaries()
    control_plane = ControlPlane(
        tmp_path_factory.mktemp("controlplane"), bin_dir=bin_dir, api_extensions=CRDS
    )
    control_plane.start()
    try:
        yield Cluster(control_plane.kubeconfig, control_plane.binary("kubectl"), control_plane)
    finally:
        control_plane.stop()


@pytest.fixture(scope="module")
def real_node_possible() -> None:
    """Skips where this machine cannot run a real node, saying why; fails in CI as root,
    where hack/setup.sh must have set one up."""
    reason = unavailable()
    if reason is not None and os.environ.get("CI") and os.geteuid() == 0:
        pytest.fail(f"CI runs as root, so hack/setup.sh must have set up a real node: {reason}")
    if reason is not None:
        pytest.skip(reason)


@pytest.fixture(scope="module")
def real_cluster(
    real_node_possible: None, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RealCluster]:
    """A cluster whose one node runs pods in real containers (stalk_devenv.real_cluster),
    one per test module (the node's address is one, so two never overlap)."""
    started = RealCluster(tmp_path_factory.mktemp("realnode"), api_extensions=CRDS).start()
    try:
        yield started
    finally:
        started.stop()


@pytest.fixture(scope="module")
def real_kube(real_cluster: RealCluster) -> Cluster:
    """The real-node cluster as the tests' kubectl wrapper."""
    assert real_cluster.control_plane is not None
    control_plane = real_cluster.control_plane
    return Cluster(control_plane.kubeconfig, control_plane.binary("kubectl"), control_plane)


@pytest.fixture
def local_cluster(cluster: Cluster) -> ControlPlane:
    if cluster.control_plane is None:
        pytest.skip("needs the local control plane (the process kubelet runs pods there)")
    return cluster.control_plane


@pytest.fixture
def namespace(cluster: Cluster) -> Iterator[str]:
    name = f"t-{uuid.uuid4().hex[:8]}"
    cluster.kubectl("create", "namespace", name)
    wait_for(
        lambda: (
            cluster.kubectl(
                "get", "serviceaccount", "default", namespace=name, check=False
            ).returncode
            == 0
        ),
        30,
        f"the default ServiceAccount in {name}",
    )
    yield name
    cluster.kubectl("delete", "namespace", name, "--wait=false", check=False)


@pytest.fixture
def process_kubelet(
    local_cluster: ControlPlane, tmp_path: Path
) -> Iterator[Callable[..., ProcessKubelet]]:
    started: list[ProcessKubelet] = []

    def start(namespace: str, labels: dict[str, str], **kwargs: object) -> ProcessKubelet:
        kubelet = ProcessKubelet(
            local_cluster,
            tmp_path / f"kubelet-{len(started)}",
            labels=labels,
            namespace=namespace,
            **kwargs,
        )  # type: ignore[arg-type]
        started.append(kubelet.start())
        return kubelet

    yield start
    for kubelet in started:
        kubelet.stop()


@pytest.fixture(scope="session")
def stalk_crds(cluster: Cluster) -> None:
    """The CRDs (the local control plane has them from the start; a live cluster gets
    them) and the admission policy shipped with them."""
    for crd in CRDS:
        cluster.kubectl("apply", "-f", str(crd))
    cluster.wait_established("crd/taskqueues.stalk.dev")
    cluster.apply(prefixed(ADMISSION_POLICY))
    wait_for_admission_policy(cluster.refusal)


@pytest.fixture
def stalk_operator(
    local_cluster: ControlPlane,
    cluster: Cluster,
    stalk_crds: None,
    namespace: str,
    redis_db: Any,
    redis_password: str,
    tmp_path: Path,
) -> Iterator[Callable[..., OperatorProcess]]:
    """Start the operator for this test's namespace, with the test Redis as default broker."""
    grant_operator(local_cluster, namespace)
    cluster.create_secret(namespace, "redis", password=redis_password)
    started: list[OperatorProcess] = []

    def start(**env: str) -> OperatorProcess:
        operator = OperatorProcess(
            local_cluster,
            namespace,
            tmp_path,
            {
                "STALK_DEFAULT_BROKER_URL": redis_db.url,
                "STALK_DEFAULT_REDIS_PASSWORD": redis_password,
                "STALK_DEFAULT_PASSWORD_SECRET": "redis:password",
                **env,
            },
            name=f"operator-{len(started) + 1}" if started else "operator",
        )
        started.append(operator.start())
        return operator

    yield start
    for operator in started:
        operator.stop()
    revoke_operator(local_cluster, namespace)
