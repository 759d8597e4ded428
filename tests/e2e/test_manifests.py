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


def test_kustomize_install_is_admitted_as_restricted(local_cluster, cluster):
    result = cluster.kubectl("apply", "-k", str(REPO_ROOT / "manifests"))
    assert "deployment.apps/stalk-operator created" in result.stdout
    labels = cluster.get_json("namespace", "stalk-system")["metadata"]["labels"]
    assert labels["pod-security.kubernetes.io/enforce"] == "restricted"
    wait_for(
        lambda: pods(cluster, "stalk-system", "app.kubernetes.io/component=operator"),
        30,
        "the operator pod to be admitted under the restricted standard",
    )
    assert cluster.get_json("clusterkopfpeering", "stalk")["metadata"]["name"] == "stalk"
    # The CRDs stay (shared with the other tests); what else a user's install adds
    # cluster-wide goes, or it would police and widen the other tests' TaskQueues.
    cluster.kubectl("delete", "namespace", "stalk-system", "--wait=false", check=False)
    for shipped in ("admission", "rbac"):
        cluster.kubectl("delete", "-f", str(REPO_ROOT / "manifests" / shipped), check=False)


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
