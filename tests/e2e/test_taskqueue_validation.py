"""Invalid TaskQueues are refused by the API server itself, with a message that says why."""

from __future__ import annotations

import copy

import pytest

pytestmark = pytest.mark.e2e

VALID = {
    "apiVersion": "stalk.dev/v1alpha1",
    "kind": "TaskQueue",
    "metadata": {"name": "probe"},
    "spec": {"queues": ["default"]},
}


def with_spec(**changes: object) -> dict:
    body = copy.deepcopy(VALID)
    body["spec"].update(changes)
    return body


INVALID = [
    (
        "min above max",
        with_spec(scaling={"minReplicas": 5, "maxReplicas": 2}),
        "scaling.minReplicas must not exceed scaling.maxReplicas",
    ),
    (
        "min above default max",
        with_spec(scaling={"minReplicas": 15}),
        "scaling.minReplicas must not exceed scaling.maxReplicas",
    ),
    ("negative min", with_spec(scaling={"minReplicas": -1}), "greater than or equal to 0"),
    ("zero max", with_spec(scaling={"maxReplicas": 0}), "greater than or equal to 1"),
    ("no queues", with_spec(queues=[]), "should have at least 1 items"),
    ("missing queues", {**VALID, "spec": {}}, "spec.queues: Required value"),
    ("queues not a list", with_spec(queues="default"), "must be of type array"),
    ("bad queue name", with_spec(queues=["bad queue!"]), "should match"),
    ("duplicate queues", with_spec(queues=["a", "a"]), "Duplicate value"),
    ("zero concurrency", with_spec(worker={"concurrency": 0}), "greater than or equal to 1"),
    ("unknown pool", with_spec(worker={"pool": "fork"}), 'Unsupported value: "fork"'),
    (
        "unknown field",
        with_spec(scaling={"minReplica": 1}),
        'unknown field "spec.scaling.minReplica"',
    ),
    ("wrong type", with_spec(scaling={"minReplicas": "two"}), "must be of type integer"),
    (
        "amqp broker",
        with_spec(broker={"url": "amqp://rabbit:5672"}),
        "broker.url must be redis://, rediss:// or a ;-separated list of sentinel:// URLs",
    ),
    (
        "password in URL",
        with_spec(broker={"url": "redis://:hunter2@redis:6379/0"}),
        "broker.url must not contain a password",
    ),
    (
        "sentinel without master",
        with_spec(broker={"url": "sentinel://s1:26379;sentinel://s2:26379"}),
        "broker.masterName is required with sentinel:// URLs",
    ),
    (
        "priority steps without 0",
        with_spec(broker={"prioritySteps": [3, 6]}),
        "broker.prioritySteps must include 0",
    ),
    (
        "secret ref without key",
        with_spec(broker={"url": "redis://r:6379", "passwordSecretRef": {"name": "s"}}),
        "spec.broker.passwordSecretRef.key: Required value",
    ),
    (
        "fallback above max",
        with_spec(scaling={"maxReplicas": 3, "fallbackReplicas": 4}),
        "scaling.fallbackReplicas must not exceed scaling.maxReplicas",
    ),
    ("zero target", with_spec(scaling={"targetTasksPerReplica": 0}), "greater than or equal to 1"),
    (
        "zero poll interval",
        with_spec(scaling={"pollIntervalSeconds": 0}),
        "greater than or equal to 1",
    ),
    (
        "window too long",
        with_spec(scaling={"scaleDown": {"stabilizationWindowSeconds": 99999}}),
        "less than or equal to 3600",
    ),
    ("bad pull policy", with_spec(worker={"imagePullPolicy": "Sometimes"}), "Unsupported value"),
]


@pytest.mark.parametrize(("case", "body", "message"), INVALID, ids=[c[0] for c in INVALID])
def test_invalid_taskqueue_is_refused(cluster, stalk_crds, namespace, case, body, message):
    result = cluster.apply(body, namespace=namespace, check=False)
    assert result.returncode != 0, f"{case}: accepted"
    assert message in result.stderr, f"{case}: {result.stderr}"
    assert (
        cluster.kubectl("get", "tq", "probe", namespace=namespace, check=False).returncode != 0
    ), "nothing was stored"


def test_valid_taskqueue_gets_defaults(cluster, stalk_crds, namespace):
    cluster.apply(VALID, namespace=namespace)
    spec = cluster.get_json("tq", "probe", namespace=namespace)["spec"]
    assert spec["scaling"]["minReplicas"] == 1
    assert spec["scaling"]["maxReplicas"] == 10
    assert spec["scaling"]["scaleDown"]["stabilizationWindowSeconds"] == 60
    assert spec["scaling"]["scaleUp"]["stabilizationWindowSeconds"] == 0


def test_kubectl_explain_reads_well(cluster, stalk_crds):
    text = cluster.kubectl("explain", "tq.spec.scaling.minReplicas").stdout
    assert "Fewest replicas. 0 lets an idle pool scale to zero." in text
    shortname = cluster.kubectl("api-resources", "--api-group=stalk.dev").stdout
    assert "tq" in shortname.split()
