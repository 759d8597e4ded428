"""manifests/ installs with `kubectl apply -k`, and every pod passes the restricted
Pod Security Standard: the operator's, and the workers' the operator creates."""

from __future__ import annotations

import pytest
from kube import wait_for
from stalk_devenv.controlplane import REPO_ROOT
from taskqueues import taskqueue

pytestmark = pytest.mark.e2e


def pods(cluster, namespace, selector):
    return cluster.get_json("pods", "-l", selector, namespace=namespace)["items"]


@pytest.fixture
def empty_cluster(tmp_path):
    """A control plane of its own with nothing installed: no CRD, no policy, no role."""
    from kube import Cluster, require_binaries
    from stalk_devenv.controlplane import ControlPlane

    control_plane = ControlPlane(tmp_path / "empty", bin_dir=require_binaries(), nodes=1)
    control_plane.start()
    try:
        yield Cluster(control_plane.kubeconfig, control_plane.binary("kubectl"), control_plane)
    finally:
        control_plane.stop()


def test_kustomize_installs_in_one_pass_on_an_empty_cluster_admitted_as_restricted(
    empty_cluster,
):
    """Exactly what the README says, once, on a cluster that has never seen Stalk."""
    result = empty_cluster.kubectl("apply", "-k", str(REPO_ROOT / "manifests"), check=False)
    assert result.returncode == 0, result.stderr
    for created in (
        "customresourcedefinition.apiextensions.k8s.io/taskqueues.stalk.dev created",
        "deployment.apps/stalk-operator created",
        "validatingadmissionpolicy.admissionregistration.k8s.io/stalk-taskqueues created",
    ):
        assert created in result.stdout, result.stdout
    labels = empty_cluster.get_json("namespace", "stalk-system")["metadata"]["labels"]
    assert labels["pod-security.kubernetes.io/enforce"] == "restricted"
    wait_for(
        lambda: pods(empty_cluster, "stalk-system", "app.kubernetes.io/component=operator"),
        30,
        "the operator pod to be admitted under the restricted standard",
    )
    again = empty_cluster.kubectl("apply", "-k", str(REPO_ROOT / "manifests"), check=False)
    assert again.returncode == 0 and " created" not in again.stdout, again.stdout


def test_worker_pods_pass_the_restricted_standard(cluster, namespace, stalk_operator):
    cluster.kubectl(
        "label", "namespace", namespace, "pod-security.kubernetes.io/enforce=restricted"
    )
    stalk_operator()
    cluster.apply(taskqueue("strict", ["strict"], scaling={"minReplicas": 1}), namespace=namespace)
    wait_for(
        lambda: pods(cluster, namespace, "stalk.dev/taskqueue=strict"),
        30,
        "a worker pod admitted under the restricted standard",
    )
    failures = cluster.kubectl(
        "get", "events", "--field-selector", "reason=FailedCreate", namespace=namespace
    ).stdout
    assert "violates PodSecurity" not in failures
