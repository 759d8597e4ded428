"""The Helm chart, checked offline with the real helm binary: lint, CRDs, RBAC, policy."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from chart import CHART, KUBE_VERSION, MONITORING_API, RENDERINGS, ROOT, find, helm_binary, render


@pytest.fixture(scope="module")
def helm() -> str:
    return helm_binary()


def test_lint_strict(helm):
    result = subprocess.run([helm, "lint", "--strict", str(CHART)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_chart_testing_lint(helm):
    """What `ct lint --config charts/ct.yaml` checks (chart-testing itself is not served
    here): Chart.yaml against the schema, yamllint on Chart.yaml, values.yaml and every
    ci values file, and `helm lint --strict` with each ci values file."""
    lint = ROOT / "charts" / "lint"
    bin_dir = Path(sys.executable).parent
    checks = [
        [str(bin_dir / "yamale"), "-s", str(lint / "chart_schema.yaml"), str(CHART / "Chart.yaml")],
        [str(bin_dir / "yamllint"), "--strict", "-c", str(lint / "lintconf.yaml"),
         str(CHART / "Chart.yaml"), str(CHART / "values.yaml"), *map(str, CHART.glob("ci/*.yaml"))],
        *([helm, "lint", "--strict", str(CHART), "-f", str(v)] for v in CHART.glob("ci/*.yaml")),
    ]  # fmt: skip
    for check in checks:
        result = subprocess.run(check, capture_output=True, text=True)
        assert result.returncode == 0, (check[0], result.stdout + result.stderr)
    config = yaml.safe_load((ROOT / "charts" / "ct.yaml").read_text())
    assert (ROOT / config["chart-yaml-schema"]).is_file() and (ROOT / config["lint-conf"]).is_file()


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
        (["--set", "redis.tls.enabled=true"], "redis.tls.enabled needs a certificate"),
        (
            ["--set", "redis.tls.enabled=true", "--set", "redis.tls.certManager.enabled=true"],
            "needs cert-manager's API",
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
    """What the operator registers, and the agent's task and beat metrics (in a process
    of its own: the task metrics are multiprocess values)."""
    import subprocess
    import sys
    import tempfile

    from prometheus_client import CollectorRegistry
    from stalk_operator.reporting.metrics import Metrics

    registry = CollectorRegistry()
    Metrics(registry)
    names = [family.name for family in registry.collect()]
    script = (
        "import sys\n"
        "from stalk_agent.task_metrics import TaskMetrics\n"
        "metrics = TaskMetrics(sys.argv[1])\n"
        "for metric in (metrics.received, metrics.started_total, metrics.finished,\n"
        "               metrics.runtime, metrics.queue_wait):\n"
        "    for family in metric.describe():\n"
        "        print(family.name)\n"
        "from stalk_agent.beat_metrics import BeatMetrics\n"
        "for family in BeatMetrics().registry.collect():\n"
        "    print(family.name)\n"
    )
    with tempfile.TemporaryDirectory() as directory:
        env = {"PROMETHEUS_MULTIPROC_DIR": directory, "PATH": ""}
        agent = subprocess.run(
            [sys.executable, "-c", script, directory],
            capture_output=True,
            text=True,
            check=True,
            env=env,
        )
    names += agent.stdout.split()
    return {n for name in names for n in (name, f"{name}_total", f"{name}_bucket")}


def _flower_metric_names() -> set[str]:
    """What the installed Flower registers for /metrics (in a process of its own: it
    registers on prometheus_client's global registry)."""
    import subprocess
    import sys

    script = (
        "from flower.events import PrometheusMetrics\n"
        "from prometheus_client import REGISTRY\n"
        "PrometheusMetrics()\n"
        "for family in REGISTRY.collect():\n"
        "    print(family.name)\n"
    )
    names = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True
    ).stdout.split()
    return {n for name in names for n in (name, f"{name}_total", f"{name}_bucket")}


def test_monitoring_objects_need_the_prometheus_operator_api(helm):
    kinds = {d["kind"] for d in render(helm)}
    assert not kinds & {"ServiceMonitor", "PrometheusRule"}, "gated on monitoring.coreos.com/v1"
    assert "ConfigMap" in kinds
    with_api = render(helm, *RENDERINGS["everything-values"])
    monitors = {d["metadata"]["name"] for d in with_api if d["kind"] == "ServiceMonitor"}
    assert monitors == {"stalk-operator", "stalk-flower", "stalk-redis"}
    workers = find(with_api, "PodMonitor", "-workers")
    assert workers["spec"]["namespaceSelector"] == {"any": True}
    assert workers["spec"]["podMetricsEndpoints"][0]["port"] == "stalk-agent"
    namespaced = render(
        helm,
        *MONITORING_API,
        "--set",
        "operator.clusterWide=false",
        "--set",
        "operator.watchNamespaces={shop,media}",
    )
    selector = find(namespaced, "PodMonitor", "-workers")["spec"]["namespaceSelector"]
    assert selector == {"matchNames": ["stalk", "shop", "media"]}, selector
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
    for panel in dashboard["panels"]:
        assert panel.get("description"), f"panel {panel['title']!r} says what it shows"
        for target in panel["targets"]:
            for window in re.findall(r"rate\([^)]*\[([^\]]+)\]", target["expr"]):
                assert window == "$__rate_interval", (panel["title"], target["expr"])
    assert used <= exported, f"not exported by the operator: {sorted(used - exported)}"
    from_flower = {name for expr in exprs for name in re.findall(r"\bflower_[a-z_]+", expr)}
    assert from_flower, "task-level panels and alerts read Flower's metrics"
    flowers = _flower_metric_names()
    assert from_flower <= flowers, f"not exported by Flower: {sorted(from_flower - flowers)}"
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


def _pod_specs(docs: list[dict]) -> dict[str, dict]:
    """Every pod the release runs, by its object's name."""
    specs = {}
    for doc in docs:
        if doc["kind"] in ("Deployment", "StatefulSet"):
            specs[doc["metadata"]["name"]] = doc["spec"]["template"]["spec"]
        elif doc["kind"] == "Pod":
            specs[doc["metadata"]["name"]] = doc["spec"]
    return specs


def test_every_pod_takes_pull_secrets_priority_and_placement(helm):
    digest = "sha256:" + "ab" * 32
    docs = render(
        helm,
        "--set", "global.imagePullSecrets[0].name=registry-credentials",
        "--set", "global.priorityClassName=stalk-high",
        "--set", "redis.priorityClassName=stalk-critical",
        "--set", "flower.nodeSelector.pool=tools",
        "--set", "beat.tolerations[0].key=dedicated",
        "--set", "beat.tolerations[0].operator=Exists",
        "--set", f"operator.image.digest={digest}",
    )  # fmt: skip
    specs = _pod_specs(docs)
    assert set(specs) == {
        "stalk-operator", "stalk-redis", "stalk-beat", "stalk-flower", "stalk-test-send-task"
    }, sorted(specs)  # fmt: skip
    for name, spec in specs.items():
        assert spec["imagePullSecrets"] == [{"name": "registry-credentials"}], name
        expected = "stalk-critical" if name == "stalk-redis" else "stalk-high"
        assert spec["priorityClassName"] == expected, name
    assert specs["stalk-flower"]["nodeSelector"] == {"pool": "tools"}
    assert specs["stalk-beat"]["tolerations"] == [{"key": "dedicated", "operator": "Exists"}]
    operator_image = specs["stalk-operator"]["containers"][0]["image"]
    assert operator_image == f"ghcr.io/stalk-dev/stalk-operator@{digest}"
    plain = _pod_specs(render(helm))
    assert all("priorityClassName" not in s and "imagePullSecrets" not in s for s in plain.values())


def test_redis_spreads_over_zones_and_hosts_and_never_blocks_a_drain(helm):
    docs = render(helm, "--set", "redis.metrics.enabled=true")
    spec = _pod_specs(docs)["stalk-redis"]
    spread = {c["topologyKey"]: c for c in spec["topologySpreadConstraints"]}
    assert set(spread) == {"topology.kubernetes.io/zone", "kubernetes.io/hostname"}
    for constraint in spread.values():
        assert constraint["whenUnsatisfiable"] == "ScheduleAnyway", "one zone still schedules"
        assert constraint["labelSelector"]["matchLabels"]["app.kubernetes.io/component"] == "redis"
    assert "podAntiAffinity" in spec["affinity"]
    # A constraint that selects its own pods is kept as written, not narrowed further.
    own = {"matchExpressions": [{"key": "tier", "operator": "In", "values": ["cache"]}]}
    custom = _pod_specs(
        render(
            helm,
            "--set-json",
            "redis.topologySpreadConstraints="
            + json.dumps([{"maxSkew": 1, "topologyKey": "rack", "labelSelector": own,
                           "whenUnsatisfiable": "DoNotSchedule"}]),
        )
    )["stalk-redis"]  # fmt: skip
    assert custom["topologySpreadConstraints"][0]["labelSelector"] == own
    pdb = find(docs, "PodDisruptionBudget")
    assert pdb["spec"]["unhealthyPodEvictionPolicy"] == "AlwaysAllow"
    exporter = next(c for c in spec["containers"] if c["name"] == "exporter")
    assert exporter["livenessProbe"]["tcpSocket"]["port"] == "metrics"
    assert exporter["readinessProbe"]["tcpSocket"]["port"] == "metrics"


RECOMMENDED_LABELS = {
    "app.kubernetes.io/name",
    "app.kubernetes.io/instance",
    "app.kubernetes.io/version",
    "app.kubernetes.io/component",
    "app.kubernetes.io/part-of",
    "app.kubernetes.io/managed-by",
}


def test_pods_and_crds_carry_the_recommended_labels(helm):
    """What a platform team selects and reports by: on every pod the release runs, on
    every object `kubectl apply -k manifests/` creates, and on the CRDs."""
    docs = render(helm, *RENDERINGS["everything-values"])
    for name, spec_owner in {
        d["metadata"]["name"]: d for d in docs if d["kind"] in ("Deployment", "StatefulSet")
    }.items():
        labels = spec_owner["spec"]["template"]["metadata"]["labels"]
        assert set(labels) >= RECOMMENDED_LABELS, (name, sorted(RECOMMENDED_LABELS - set(labels)))
        # The chart's version would roll every pod, each Redis node a failover, on upgrade.
        assert "helm.sh/chart" not in labels, name
    for crd in sorted((ROOT / "charts" / "stalk" / "crds").glob("*.yaml")):
        for doc in yaml.safe_load_all(crd.read_text()):
            labels = doc["metadata"]["labels"]
            assert {"app.kubernetes.io/name", "app.kubernetes.io/part-of"} <= set(labels), crd
    built = subprocess.run(
        [str(Path(helm).parent / "kubectl"), "kustomize", str(ROOT / "manifests")],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    for doc in yaml.safe_load_all(built):
        labels = doc["metadata"].get("labels") or {}
        assert labels.get("app.kubernetes.io/managed-by") == "kustomize", doc["metadata"]["name"]
        assert labels.get("app.kubernetes.io/part-of") == "stalk", doc["metadata"]["name"]
        template = doc.get("spec", {}).get("template", {}).get("metadata", {})
        if template:
            assert set(template["labels"]) >= RECOMMENDED_LABELS, doc["metadata"]["name"]
            assert "helm.sh/chart" not in template["labels"]


@pytest.mark.parametrize("create", [False, True])
def test_the_peering_objects_have_one_creator(helm, create):
    """The release holds the peering objects, or the operator creates them; never both,
    since the operator, started first, would make `helm install` fail on "already exists"."""
    docs = render(helm, "--set", f"operator.createPeering={str(create).lower()}")
    peerings = [d for d in docs if d["kind"] in ("ClusterKopfPeering", "KopfPeering")]
    operator = find(docs, "Deployment", "stalk-operator")
    env = {
        e["name"]: e.get("value")
        for e in operator["spec"]["template"]["spec"]["containers"][0]["env"]
    }
    rules = find(docs, "ClusterRole", "stalk-operator-discovery")["rules"]
    verbs = next(r["verbs"] for r in rules if r["resources"] == ["clusterkopfpeerings"])
    assert env["STALK_CREATE_PEERING"] == str(create).lower()
    assert ("create" in verbs) is create
    assert len(peerings) == (0 if create else 1)


def _broker_ca(pod: dict, container: dict) -> tuple[str, str] | None:
    """(Secret, key) behind the CA file a container's broker settings name."""
    env = {e["name"]: e.get("value") for e in container.get("env", [])}
    path = env.get("STALK_REDIS_CA_FILE") or env.get("STALK_DEFAULT_REDIS_CA_FILE")
    if path is None:
        return None
    (mount,) = [m for m in container["volumeMounts"] if path.startswith(m["mountPath"] + "/")]
    volume = next(v for v in pod["volumes"] if v["name"] == mount["name"])
    (item,) = [i for i in volume["secret"]["items"] if path.endswith("/" + i["path"])]
    return volume["secret"]["secretName"], item["key"]


def test_redis_tls_reaches_every_client_and_node(helm):
    """With the bundled Redis on TLS, every Celery client of the release (operator,
    beat, Flower, the helm test) is told so and mounts the CA it verifies against; the
    operator hands the same Secret to worker pods; the exporter verifies too."""
    docs = render(
        helm,
        *("--set", "redis.tls.enabled=true", "--set", "redis.tls.existingSecret=redis-certs"),
        *("--set", "redis.metrics.enabled=true", "--set", "beat.enabled=true"),
        *("--set", "flower.enabled=true"),
    )
    pods = {
        d["metadata"]["name"]: d["spec"].get("template", {}).get("spec") or d["spec"]
        for d in docs
        if d["kind"] in ("Deployment", "Pod")
    }
    assert {"stalk-operator", "stalk-beat", "stalk-flower", "stalk-test-send-task"} <= set(pods)
    for name, pod in pods.items():
        container = pod["containers"][0]
        env = {e["name"]: e.get("value") for e in container["env"]}
        assert "true" in (env.get("STALK_REDIS_TLS"), env.get("STALK_DEFAULT_REDIS_TLS")), name
        assert _broker_ca(pod, container) == ("redis-certs", "ca.crt"), name
    operator_env = {
        e["name"]: e.get("value") for e in pods["stalk-operator"]["containers"][0]["env"]
    }
    assert operator_env["STALK_DEFAULT_CA_SECRET"] == "redis-certs:ca.crt"
    redis_pod = find(docs, "StatefulSet", "-redis")["spec"]["template"]["spec"]
    assert {"name": "tls", "secret": {"secretName": "redis-certs", "defaultMode": 0o440}} in (
        redis_pod["volumes"]
    )
    exporter = next(c for c in redis_pod["containers"] if c["name"] == "exporter")
    exporter_env = {e["name"]: e.get("value") for e in exporter["env"]}
    assert exporter_env["REDIS_ADDR"].startswith("rediss://localhost:")
    assert exporter_env["REDIS_EXPORTER_TLS_CA_CERT_FILE"] == "/tls/ca.crt"
    plain = render(helm)
    assert not [d for d in plain if d["kind"] == "Certificate"]
    assert "broker-ca" not in json.dumps(plain)


def test_cert_manager_issues_a_certificate_naming_every_node_and_localhost(helm):
    docs = render(
        helm,
        *("--set", "redis.tls.enabled=true", "--set", "redis.tls.certManager.enabled=true"),
        *("--set", "redis.tls.certManager.issuerRef.name=internal-ca"),
        *("--api-versions", "cert-manager.io/v1"),
    )
    certificate = find(docs, "Certificate", "-redis")["spec"]
    redis_pod = find(docs, "StatefulSet", "-redis")["spec"]["template"]["spec"]
    tls_volume = next(v for v in redis_pod["volumes"] if v["name"] == "tls")
    assert tls_volume["secret"]["secretName"] == certificate["secretName"]
    assert "*.stalk-redis-headless.stalk.svc.cluster.local" in certificate["dnsNames"]
    assert "localhost" in certificate["dnsNames"]
    assert certificate["issuerRef"]["name"] == "internal-ca"
    assert {"server auth", "client auth"} <= set(certificate["usages"])
