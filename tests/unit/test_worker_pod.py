"""The worker pod the operator renders: what the agent needs and nothing it does not."""

from __future__ import annotations

from typing import Any

import pytest
from stalk_operator.workload import build_deployment
from taskqueues import parsed, stored


def pod(**worker: Any) -> dict[str, Any]:
    spec = build_deployment(parsed(stored("emails", ["email"], worker=worker)))
    return spec["spec"]["template"]["spec"]


@pytest.mark.parametrize("agent", ["Injected", "Installed"])
def test_the_agent_serves_metrics_from_an_empty_dir_on_a_named_port(agent):
    spec = pod(agent=agent)
    worker = spec["containers"][0]
    env = {e["name"]: e.get("value") for e in worker["env"]}
    directory = env["PROMETHEUS_MULTIPROC_DIR"]
    mounted = {m["mountPath"]: m["name"] for m in worker["volumeMounts"]}
    volumes = {v["name"]: v for v in spec["volumes"]}
    assert "emptyDir" in volumes[mounted[directory]], "the pool's metric files need a writable dir"
    assert worker["ports"] == [{"name": "stalk-agent", "containerPort": 8801, "protocol": "TCP"}]
    assert worker["livenessProbe"]["httpGet"]["port"] == "stalk-agent"


def test_without_the_agent_there_is_no_metrics_port_or_directory():
    spec = pod(agent="Disabled")
    worker = spec["containers"][0]
    assert "ports" not in worker
    assert "PROMETHEUS_MULTIPROC_DIR" not in {e["name"] for e in worker["env"]}


def test_worker_pods_carry_no_api_token_unless_they_name_a_service_account():
    assert pod()["automountServiceAccountToken"] is False
    named = pod(serviceAccountName="thumbnailer")
    assert named["serviceAccountName"] == "thumbnailer"
    assert "automountServiceAccountToken" not in named, "its own account: its own choice"
    asked = pod(podTemplate={"automountServiceAccountToken": True})
    assert asked["automountServiceAccountToken"] is True, "the pod template wins"
