"""The local control plane is a real Kubernetes: validation, controllers, GC, RBAC."""

from __future__ import annotations

import pytest
from kube import wait_for

pytestmark = pytest.mark.e2e

WIDGET_CRD = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": "widgets.test.stalk.dev"},
    "spec": {
        "group": "test.stalk.dev",
        "names": {"kind": "Widget", "plural": "widgets", "singular": "widget"},
        "scope": "Namespaced",
        "versions": [
            {
                "name": "v1",
                "served": True,
                "storage": True,
                "schema": {
                    "openAPIV3Schema": {
                        "type": "object",
                        "properties": {
                            "spec": {
                                "type": "object",
                                "required": ["minReplicas", "maxReplicas"],
                                "properties": {
                                    "minReplicas": {"type": "integer", "minimum": 0},
                                    "maxReplicas": {"type": "integer", "minimum": 1},
                                },
                                "x-kubernetes-validations": [
                                    {
                                        "rule": "self.minReplicas <= self.maxReplicas",
                                        "message": "minReplicas must not exceed maxReplicas",
                                    }
                                ],
                            }
                        },
                    }
                },
            }
        ],
    },
}


def widget(name: str, low: int, high: int) -> dict:
    return {
        "apiVersion": "test.stalk.dev/v1",
        "kind": "Widget",
        "metadata": {"name": name},
        "spec": {"minReplicas": low, "maxReplicas": high},
    }


def deployment(name: str, replicas: int, **pod_spec: object) -> dict:
    labels = {"app": name}
    spec = {
        "containers": [
            {"name": "main", "image": "registry.invalid/none:1", "command": ["sleep", "3600"]}
        ],
        **pod_spec,
    }
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": labels},
            "template": {"metadata": {"labels": labels}, "spec": spec},
        },
    }


def pods(cluster, namespace: str, app: str) -> list[dict]:
    items = cluster.get_json("pods", "-l", f"app={app}", namespace=namespace)["items"]
    return [p for p in items if not p["metadata"].get("deletionTimestamp")]


def test_crd_schema_and_cel_rule_are_enforced_by_the_api_server(cluster, namespace):
    cluster.apply(WIDGET_CRD)
    wait_for(
        lambda: (
            cluster.apply(widget("probe", 0, 1), namespace=namespace, check=False).returncode == 0
        ),
        30,
        "the CRD to be served",
    )
    assert cluster.apply(widget("ok", 1, 3), namespace=namespace, check=False).returncode == 0
    refused = cluster.apply(widget("bad", 5, 2), namespace=namespace, check=False)
    assert refused.returncode != 0
    assert "minReplicas must not exceed maxReplicas" in refused.stderr
    negative = cluster.apply(widget("neg", -1, 2), namespace=namespace, check=False)
    assert "should be greater than or equal to 0" in negative.stderr


def test_deployment_pods_run_on_kwok_nodes_and_deletion_cost_picks_victims(
    local_cluster, cluster, namespace
):
    cluster.apply(deployment("web", 3), namespace=namespace)
    wait_for(
        lambda: (
            len(
                [
                    p
                    for p in pods(cluster, namespace, "web")
                    if p["status"].get("phase") == "Running"
                ]
            )
            == 3
        ),
        30,
        "3 Running pods",
    )
    running = pods(cluster, namespace, "web")
    assert {p["spec"]["nodeName"] for p in running} <= {f"kwok-node-{i}" for i in range(3)}
    costs = {p["metadata"]["name"]: cost for p, cost in zip(running, (-5, 100, 7), strict=True)}
    for name, cost in costs.items():
        cluster.kubectl(
            "annotate",
            "pod",
            name,
            f"controller.kubernetes.io/pod-deletion-cost={cost}",
            namespace=namespace,
        )
    cluster.kubectl("scale", "deployment", "web", "--replicas=1", namespace=namespace)
    wait_for(lambda: len(pods(cluster, namespace, "web")) == 1, 30, "scale-down to 1 pod")
    [survivor] = pods(cluster, namespace, "web")
    assert survivor["metadata"]["name"] == max(costs, key=costs.__getitem__)


def test_deleting_an_owner_garbage_collects_what_it_owns(cluster, namespace):
    cluster.kubectl("create", "configmap", "owner", namespace=namespace)
    owner = cluster.get_json("configmap", "owner", namespace=namespace)["metadata"]
    cluster.apply(
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {
                "name": "owned",
                "ownerReferences": [
                    {"apiVersion": "v1", "kind": "ConfigMap", "name": "owner", "uid": owner["uid"]}
                ],
            },
        },
        namespace=namespace,
    )
    cluster.kubectl("delete", "configmap", "owner", namespace=namespace)
    wait_for(
        lambda: (
            cluster.kubectl(
                "get", "configmap", "owned", namespace=namespace, check=False
            ).returncode
            != 0
        ),
        30,
        "the garbage collector to delete the owned ConfigMap",
    )


def test_rbac_is_enforced_for_service_accounts(local_cluster, cluster, namespace, tmp_path):
    cluster.kubectl("create", "serviceaccount", "reader", namespace=namespace)
    token = local_cluster.service_account_token(namespace, "reader")
    kubeconfig = local_cluster.kubeconfig_for_token(token, tmp_path / "reader.kubeconfig")

    def can_list() -> bool:
        result = cluster.kubectl(
            f"--kubeconfig={kubeconfig}", "get", "pods", namespace=namespace, check=False
        )
        return result.returncode == 0

    denied = cluster.kubectl(
        f"--kubeconfig={kubeconfig}", "get", "pods", namespace=namespace, check=False
    )
    assert "forbidden" in denied.stderr.lower()
    cluster.kubectl(
        "create", "role", "pod-reader", "--verb=list", "--resource=pods", namespace=namespace
    )
    cluster.kubectl(
        "create",
        "rolebinding",
        "reader",
        "--role=pod-reader",
        f"--serviceaccount={namespace}:reader",
        namespace=namespace,
    )
    wait_for(can_list, 10, "the RoleBinding to take effect")
    other = cluster.kubectl(
        f"--kubeconfig={kubeconfig}", "get", "secrets", namespace=namespace, check=False
    )
    assert "forbidden" in other.stderr.lower(), "only what the Role grants is allowed"
