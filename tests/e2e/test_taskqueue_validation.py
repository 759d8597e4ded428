"""Invalid TaskQueues are refused by the API server itself, with a message that says why."""

from __future__ import annotations

import copy

import pytest
from pod_policy_cases import ALLOWED, FORBIDDEN

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


def named(name: str) -> dict:
    body = copy.deepcopy(VALID)
    body["metadata"]["name"] = name
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
        "tls on the default broker",
        with_spec(broker={"tls": {"enabled": True}}),
        "broker.tls goes with broker.url",
    ),
    (
        "tls CA without a key",
        with_spec(broker={"url": "rediss://r:6380/0", "tls": {"caSecretRef": {"name": "ca"}}}),
        "key: Required value",
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
    ("name of 64 characters", named("a" * 64), "metadata.name must be at most 63 characters"),
    ("name with a dot", named("emails.v2"), "metadata.name must be a DNS label"),
    (
        "pod label key",
        with_spec(worker={"podLabels": {"team/owner/x": "a"}}),
        "keys must be label keys",
    ),
    (
        "pod label value",
        with_spec(worker={"podLabels": {"team": "not valid!"}}),
        "values must be label values",
    ),
    (
        "pod label too long",
        with_spec(worker={"podLabels": {"team": "x" * 64}}),
        "Too long: may not be more than 63",
    ),
    (
        "pod label Stalk sets",
        with_spec(worker={"podLabels": {"stalk.dev/taskqueue": "other"}}),
        "worker.podLabels must not set the labels Stalk sets",
    ),
    (
        "node selector value",
        with_spec(worker={"nodeSelector": {"zone": "eu west"}}),
        "values must be label values",
    ),
    (
        "annotation key",
        with_spec(worker={"podAnnotations": {"bad key": "x"}}),
        "keys must be label keys",
    ),
    (
        "queues in extra args",
        with_spec(worker={"extraArgs": ["-Q", "other"]}),
        "worker.extraArgs must not set an option Stalk sets from the spec",
    ),
    (
        "app in extra args",
        with_spec(worker={"extraArgs": ["--app=evil.app"]}),
        "worker.extraArgs must not set an option Stalk sets from the spec",
    ),
    (
        "env name with =",
        with_spec(worker={"env": [{"name": "A=B", "value": "1"}]}),
        "spec.worker.env[0].name",
    ),
    (
        "service account name",
        with_spec(worker={"serviceAccountName": "Not_A_Name"}),
        "spec.worker.serviceAccountName",
    ),
    (
        "secret ref name",
        with_spec(
            broker={"url": "redis://r:6379", "passwordSecretRef": {"name": "../x", "key": "p"}}
        ),
        "spec.broker.passwordSecretRef.name",
    ),
    (
        "secret ref key",
        with_spec(
            broker={"url": "redis://r:6379", "passwordSecretRef": {"name": "r", "key": "a b"}}
        ),
        "spec.broker.passwordSecretRef.key",
    ),
    ("image with a space", with_spec(worker={"image": "team/app :1"}), "spec.worker.image"),
    (
        "resource quantity",
        with_spec(worker={"resources": {"requests": {"cpu": "lots"}}}),
        "spec.worker.resources.requests.cpu",
    ),
    (
        "resources misspelt",
        with_spec(worker={"resources": {"request": {"cpu": "1"}}}),
        'unknown field "spec.worker.resources.request"',
    ),
    *[
        (f"pod: {case}", with_spec(worker=worker), "TaskQueue probe: " + "; ".join(messages))
        for case, worker, messages in FORBIDDEN
    ],
]
"""Every input Stalk cannot turn into valid objects, with the message it is refused with.
The pod cases are refused by the admission policy with the very refusals the operator
gives (tests/pod_policy_cases.py); the rest by the CRD's schema and CEL rules."""


def test_at_least_forty_invalid_inputs_are_tried():
    assert len(INVALID) >= 40, len(INVALID)


@pytest.mark.parametrize(("case", "body", "message"), INVALID, ids=[c[0] for c in INVALID])
def test_invalid_taskqueue_is_refused(cluster, stalk_crds, namespace, case, body, message):
    result = cluster.apply(body, namespace=namespace, check=False)
    assert result.returncode != 0, f"{case}: accepted"
    assert message in result.stderr, f"{case}: {result.stderr}"
    name = body["metadata"]["name"]
    assert cluster.kubectl("get", "tq", name, namespace=namespace, check=False).returncode != 0, (
        "nothing was stored"
    )


ODD_BUT_VALID = [
    ("name of exactly 63 characters", named("q" * 63)),
    (
        "queues with dots, colons and @",
        with_spec(queues=["emails.v2", "jobs:high", "a@b", "x-y_z"]),
    ),
    ("allowed pod extras", with_spec(worker=ALLOWED[0][1])),
    (
        "quantities",
        with_spec(worker={"resources": {"requests": {"cpu": "250m", "memory": 1073741824}}}),
    ),
]


@pytest.mark.parametrize(("case", "body"), ODD_BUT_VALID, ids=[c[0] for c in ODD_BUT_VALID])
def test_odd_but_valid_taskqueues_are_accepted(cluster, stalk_crds, namespace, case, body):
    cluster.apply(body, namespace=namespace)


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
