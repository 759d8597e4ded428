"""The Helm chart, checked offline with the real helm binary: lint, CRDs, RBAC, policy."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from chart import CHART, KUBE_VERSION, MONITORING_API, RENDERINGS, ROOT, find, helm_binary, render


@pytest.fixture(scope="module")
def helm() -> str:
    return helm_binary()


def test_lint_strict(helm):
    result = subprocess.run([helm, "lint", "--strict", str(CHART)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_generated_files_are_current(helm):
    """Every generated file, the chart-rendered manifests included, equals what
    `make generate` writes from its source."""
    result = subprocess.run(
        [sys.executable, str(ROOT / "hack" / "generate.py"), "--check", "--helm", helm],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("rendering", RENDERINGS)
def test_rendered_pods_are_secure_and_complete(helm, rendering):
    docs = render(helm, *RENDERINGS[rendering])
    workloads = [d for d in docs if d["kind"] in ("Deployment", "StatefulSet", "DaemonSet", "Job")]
    assert workloads
    for workload in workloads:
        pod = workload["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
        for container in pod["containers"]:
            where = f"{workload['metadata']['name']}/{container['name']}"
            context = container["securityContext"]
            assert context["allowPrivilegeEscalation"] is False, where
            assert context["readOnlyRootFilesystem"] is True, where
            assert context["capabilities"]["drop"] == ["ALL"], where
            assert "privileged" not in context or context["privileged"] is False, where
            assert container["resources"]["requests"], f"{where} has no resource requests"
            assert not container["image"].endswith(":latest"), where
            assert ":" in container["image"], f"{where} has no tag"
            for env in container.get("env", []):
                if any(word in env["name"] for word in ("PASSWORD", "SECRET", "TOKEN")):
                    assert "value" not in env or ":" in env["value"], (
                        f"{where}: {env['name']} must come from a Secret, not a literal"
                    )


@pytest.mark.parametrize("rendering", RENDERINGS)
def test_every_label_and_annotation_is_a_string(helm, rendering):
    """The API server refuses a number there; an unquoted checksum that happens to read
    as one (all digits, or digits around an e) failed an install one time in a few."""

    def metadata(node):
        if isinstance(node, dict):
            if isinstance(node.get("metadata"), dict):
                yield node["metadata"]
            for value in node.values():
                yield from metadata(value)
        elif isinstance(node, list):
            for value in node:
                yield from metadata(value)

    for doc in render(helm, *RENDERINGS[rendering]):
        for meta in metadata(doc):
            for field in ("labels", "annotations"):
                for key, value in (meta.get(field) or {}).items():
                    assert isinstance(value, str), f"{doc['kind']}: {field} {key}={value!r}"


def test_checksums_are_quoted_whatever_their_digits():
    for template in (CHART / "templates").rglob("*.yaml"):
        for line in template.read_text().splitlines():
            if "sha256sum" in line:
                assert line.rstrip().endswith("| quote }}"), f"{template.name}: {line.strip()}"


def test_taskqueues_from_values(helm):
    docs = render(helm, *RENDERINGS["everything-values"])
    taskqueues = {d["metadata"]["name"]: d for d in docs if d["kind"] == "TaskQueue"}
    assert set(taskqueues) == {"emails", "reports"}
    assert taskqueues["emails"]["spec"] == {
        "queues": ["email"],
        "worker": {"concurrency": 8, "pool": "threads"},
        "scaling": {"minReplicas": 1, "maxReplicas": 5},
    }


@pytest.mark.parametrize(
    ("values", "message"),
    [
        (["--set", "broker.url=amqp://rabbit"], "does not match pattern"),
        (["--set", "operator.image.tag=latest"], "'not' failed"),
        (["--set", "operator.clusterwide=false"], "additional properties 'clusterwide'"),
        (
            ["--set", "taskQueues[0].name=Bad_Name", "--set", "taskQueues[0].queues={a}"],
            "does not match pattern",
        ),
    ],
)
def test_values_schema_refuses_bad_values(helm, values, message):
    result = subprocess.run(
        [helm, "template", "stalk", str(CHART), "--kube-version", KUBE_VERSION, *values],
        capture_output=True,
        text=True,
    )
    assert result.returncode != 0
    assert message in result.stderr


def _flower(docs: list[dict]) -> dict | None:
    return next(
        (
            d
            for d in docs
            if d["kind"] == "Deployment" and d["metadata"]["name"].endswith("-flower")
        ),
        None,
    )


def _flower_auth_refs(docs: list[dict]) -> set[tuple[str, str]]:
    """The (Secret, key) pairs Flower's container reads its login from."""
    env = _flower(docs)["spec"]["template"]["spec"]["containers"][0]["env"]
    return {
        (e["valueFrom"]["secretKeyRef"]["name"], e["valueFrom"]["secretKeyRef"]["key"])
        for e in env
        if e["name"].startswith("FLOWER_AUTH_")
    }


def test_flower_toggles(helm):
    assert _flower(render(helm, "--set", "flower.enabled=false")) is None
    docs = render(helm)
    assert _flower_auth_refs(docs) == {
        ("stalk-flower-auth", "username"),
        ("stalk-flower-auth", "password"),
    }, "basic auth is on by default"
    env = {e["name"]: e for e in _flower(docs)["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["FLOWER_BASIC_AUTH"]["value"] == "$(FLOWER_AUTH_USERNAME):$(FLOWER_AUTH_PASSWORD)"
    assert any(d["kind"] == "Secret" and d["metadata"]["name"] == "stalk-flower-auth" for d in docs)
    open_flower = render(helm, "--set", "flower.basicAuth.enabled=false")
    env = _flower(open_flower)["spec"]["template"]["spec"]["containers"][0]["env"]
    assert "FLOWER_BASIC_AUTH" not in {e["name"] for e in env}
    assert not any(d["kind"] == "Secret" and "flower" in d["metadata"]["name"] for d in open_flower)
    own = render(helm, "--set", "flower.basicAuth.existingSecret=my-flower", *MONITORING_API)
    assert _flower_auth_refs(own) == {("my-flower", "username"), ("my-flower", "password")}
    assert not any(d["kind"] == "Secret" and "flower" in d["metadata"]["name"] for d in own), (
        "no Secret generated beside yours"
    )
    # The scrape reads your Secret with the very keys Flower does (it once asked for keys
    # that Flower's own reference and the docs never mentioned).
    monitor = find(own, "ServiceMonitor", "flower")
    basic_auth = monitor["spec"]["endpoints"][0]["basicAuth"]
    assert {(ref["name"], ref["key"]) for ref in basic_auth.values()} == _flower_auth_refs(own)
    [ingress] = [
        d
        for d in render(
            helm, "--set", "flower.ingress.enabled=true", "--set", "flower.ingress.host=flower.test"
        )
        if d["kind"] == "Ingress"
    ]
    assert ingress["spec"]["rules"][0]["host"] == "flower.test"


def _exported_metric_names() -> set[str]:
    from prometheus_client import CollectorRegistry
    from stalk_operator.reporting.metrics import Metrics

    registry = CollectorRegistry()
    Metrics(registry)
    return {
        sample
        for family in registry.collect()
        for sample in (family.name, f"{family.name}_total", f"{family.name}_bucket")
    }


def test_monitoring_objects_need_the_prometheus_operator_api(helm):
    kinds = {d["kind"] for d in render(helm)}
    assert not kinds & {"ServiceMonitor", "PrometheusRule"}, "gated on monitoring.coreos.com/v1"
    assert "ConfigMap" in kinds
    with_api = render(helm, *RENDERINGS["everything-values"])
    monitors = {d["metadata"]["name"] for d in with_api if d["kind"] == "ServiceMonitor"}
    assert monitors == {"stalk-operator", "stalk-flower", "stalk-redis"}
    flower = find(with_api, "ServiceMonitor", "-flower")
    assert flower["spec"]["endpoints"][0]["basicAuth"]["password"] == {
        "name": "flower-credentials",
        "key": "password",
    }


def test_dashboard_and_alerts_use_metrics_the_operator_exports(helm):
    import re

    exported = _exported_metric_names()
    docs = render(helm, *RENDERINGS["everything-values"])
    dashboard = json.loads(
        next(d for d in docs if d["metadata"]["name"] == "stalk-dashboard")["data"]["stalk.json"]
    )
    assert dashboard["uid"] == "stalk-overview"
    exprs = [t["expr"] for panel in dashboard["panels"] for t in panel["targets"]]
    [rule] = [d for d in docs if d["kind"] == "PrometheusRule"]
    exprs += [r["expr"] for group in rule["spec"]["groups"] for r in group["rules"]]
    used = {name for expr in exprs for name in re.findall(r"\bstalk_[a-z_]+", expr)}
    assert used, "the dashboard queries Stalk metrics"
    assert used <= exported, f"not exported by the operator: {sorted(used - exported)}"
    assert {"StalkBrokerUnreachable", "StalkOperatorDown", "StalkRedisDown"} <= {
        r["alert"] for group in rule["spec"]["groups"] for r in group["rules"]
    }


def test_worker_pods_reach_the_bundled_redis_through_its_sentinels(helm):
    """The operator, configured as the chart configures it, gives a TaskQueue's worker
    pods the Sentinel URL, the master name and both passwords from the chart's Secret."""
    from stalk_operator.workload import build_deployment
    from taskqueues import parsed, stored

    operator = find(render(helm), "Deployment", "-operator")
    env = operator["spec"]["template"]["spec"]["containers"][0]["env"]
    taskqueue = parsed(
        stored("emails", ["email"], namespace="stalk"),
        **{e["name"]: e["value"] for e in env if "value" in e},
    )
    container = build_deployment(taskqueue)["spec"]["template"]["spec"]["containers"][0]
    worker_env = {e["name"]: e for e in container["env"]}
    url = worker_env["STALK_BROKER_URL"]["value"]
    assert url.count("sentinel://") == 3
    assert "stalk-redis-0.stalk-redis-headless.stalk.svc.cluster.local:26379" in url
    assert worker_env["STALK_SENTINEL_MASTER"]["value"] == "mymaster"
    for name in ("STALK_REDIS_PASSWORD", "STALK_SENTINEL_PASSWORD"):
        assert worker_env[name]["valueFrom"]["secretKeyRef"] == {
            "name": "stalk-redis",
            "key": "redis-password",
        }, name


def test_no_pod_gets_service_links(helm):
    """Kubernetes would inject STALK_<SERVICE>_PORT-style variables for the release's
    Services (named stalk-*), beside the STALK_* settings."""
    from stalk_operator.workload import build_deployment
    from taskqueues import parsed, stored

    docs = render(helm, *RENDERINGS["everything-values"])
    pods = [d["spec"]["template"]["spec"] for d in docs if "template" in d.get("spec", {})]
    pods += [d["spec"] for d in docs if d["kind"] == "Pod"]
    taskqueue = parsed(stored("t", ["q"], namespace="n"))
    pods.append(build_deployment(taskqueue)["spec"]["template"]["spec"])
    assert len(pods) >= 6
    assert all(pod.get("enableServiceLinks") is False for pod in pods)
