"""The operator's side of the pod policy: the same table the admission policy is tested
with (tests/pod_policy_cases.py), and the loop refusing to build a forbidden pod."""

from __future__ import annotations

import json

import pytest
from pod_policy_cases import ALLOWED, FORBIDDEN, WIDENED
from stalk_config import SettingsError
from stalk_operator.pod_policy import NamespacePolicy, PodPolicy, PodPolicyError, refusals
from stalk_operator.settings import OperatorSettings
from test_loop import Harness, condition


def refused(worker: dict, policy: NamespacePolicy | None = None) -> list[str]:
    return refusals(
        worker.get("podTemplate") or {},
        worker.get("serviceAccountName"),
        policy or NamespacePolicy(),
    )


@pytest.mark.parametrize(("case", "worker", "messages"), FORBIDDEN, ids=[c[0] for c in FORBIDDEN])
def test_forbidden_pods_are_refused_with_every_reason(case, worker, messages):
    assert refused(worker) == messages


@pytest.mark.parametrize(("case", "worker", "policy"), WIDENED, ids=[c[0] for c in WIDENED])
def test_a_namespace_policy_widens_exactly_what_it_names(case, worker, policy):
    assert refused(worker), f"{case}: allowed without the widening"
    widened = PodPolicy.from_json(json.dumps({"batch": policy}))
    assert refused(worker, widened.for_namespace("batch")) == []
    assert refused(worker, widened.for_namespace("other")), "the widening is per namespace"


@pytest.mark.parametrize(("case", "worker"), ALLOWED, ids=[c[0] for c in ALLOWED])
def test_restricted_pods_are_allowed(case, worker):
    assert refused(worker) == []


@pytest.mark.parametrize(
    "setting",
    ['{"batch": {"allow": ["Root"]}}', '{"batch": {"permit": []}}', "[1]", "{not json"],
)
def test_a_malformed_policy_setting_stops_the_operator_with_its_name(setting):
    with pytest.raises(SettingsError, match="STALK_POD_POLICY"):
        OperatorSettings.from_environ({"STALK_POD_POLICY": setting})
    with pytest.raises(PodPolicyError):
        PodPolicy.from_json(setting)


async def test_the_loop_builds_no_forbidden_pod_and_says_why():
    h = Harness(worker={"podTemplate": {"hostNetwork": True}})
    await h.step()
    await h.step(h.snapshot(), seconds=5)
    assert h.kube.of("apply") == []
    ready = condition(h.kube.of("status")[-1][1], "Ready")
    assert (ready["status"], ready["reason"]) == ("False", "PodNotAllowed")
    assert "podTemplate.hostNetwork needs the HostNamespaces allowance" in ready["message"]
    warnings = [e for e in h.events if e[1] == "PodNotAllowed"]
    assert len(warnings) == 1, h.events
    for _ in range(5):
        await h.step(h.snapshot(), seconds=5)
    assert len([e for e in h.events if e[1] == "PodNotAllowed"]) == 1, "said once, not per retry"
