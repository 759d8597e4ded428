"""A real Prometheus (Debian's) scrapes a real operator the way the chart's ServiceMonitor
tells the Prometheus Operator to, and answers the queries the alerts and the dashboard
make. No Prometheus Operator runs here; the scrape configuration is what it generates
from the ServiceMonitor: the endpoint's ``honorLabels`` and ``interval``, and the target
labels it attaches (``namespace`` of the Service, ``service``, ``job``, ``endpoint``)."""

from __future__ import annotations

import json
import shutil
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from chart import CHART, MONITORING_API, find, helm_binary, render
from kube import wait_for
from stalk_devenv.process import ManagedProcess, free_port
from taskqueues import taskqueue

pytestmark = pytest.mark.e2e

RELEASE_NAMESPACE = "stalk-system"


class Prometheus:
    def __init__(self, url: str) -> None:
        self.url = url

    def query(self, promql: str) -> list[dict[str, Any]]:
        query = urllib.parse.urlencode({"query": promql})
        with urllib.request.urlopen(f"{self.url}/api/v1/query?{query}", timeout=5) as reply:
            answer = json.load(reply)
        assert answer["status"] == "success", answer
        return list(answer["data"]["result"])


def scrape_config(service_monitor: dict[str, Any], service: str, target: str) -> dict[str, Any]:
    """The scrape job the Prometheus Operator makes of the ServiceMonitor's first endpoint,
    with a static target standing in for Kubernetes service discovery."""
    endpoint = service_monitor["spec"]["endpoints"][0]
    return {
        "job_name": f"serviceMonitor/{RELEASE_NAMESPACE}/{service_monitor['metadata']['name']}/0",
        "honor_labels": endpoint.get("honorLabels", False),
        "scrape_interval": "1s",  # the chart's interval, shortened for the test
        "metrics_path": endpoint.get("path", "/metrics"),
        "static_configs": [
            {
                "targets": [target],
                "labels": {
                    "namespace": RELEASE_NAMESPACE,
                    "service": service,
                    "job": service,
                    "endpoint": endpoint["port"],
                },
            }
        ],
    }


@pytest.fixture
def prometheus_for(tmp_path: Path) -> Iterator[Any]:
    binary = shutil.which("prometheus")
    if binary is None:
        pytest.skip("needs Debian's prometheus (hack/setup.sh installs it)")
    started: list[ManagedProcess] = []

    def start(scrape: dict[str, Any], rules: list[dict[str, Any]]) -> Prometheus:
        config = tmp_path / "prometheus.yml"
        rules_file = tmp_path / "rules.yml"
        rules_file.write_text(yaml.safe_dump({"groups": rules}))
        config.write_text(
            yaml.safe_dump(
                {
                    "global": {"evaluation_interval": "1s"},
                    "rule_files": [str(rules_file)],
                    "scrape_configs": [scrape],
                }
            )
        )
        port = free_port()
        process = ManagedProcess(
            "prometheus",
            [
                binary,
                f"--config.file={config}",
                f"--storage.tsdb.path={tmp_path / 'data'}",
                f"--web.listen-address=127.0.0.1:{port}",
            ],
            tmp_path / "logs",
        )
        started.append(process)
        server = Prometheus(f"http://127.0.0.1:{port}")
        process.start(ready=lambda: server.query("up") is not None, timeout=60)
        return server

    yield start
    for process in started:
        process.stop(grace=10)


def test_taskqueues_of_one_name_in_two_namespaces_stay_apart_in_prometheus(
    cluster, namespace, stalk_operator, redis_db, prometheus_for
):
    """Two TaskQueues called ``emails``, 700 and 600 waiting: each keeps its own
    namespace in Prometheus, so neither the dashboard nor a backlog alert set at 1,000
    adds them up (the scrape's own ``namespace`` label, the operator's, would otherwise
    win and rename the TaskQueue's to ``exported_namespace``)."""
    other = f"{namespace}-b"
    cluster.kubectl("create", "namespace", other)
    try:
        operator = stalk_operator(STALK_NAMESPACES=f"{namespace},{other}")
        for ns, queue in ((namespace, "mail-a"), (other, "mail-b")):
            cluster.apply(taskqueue("emails", [queue], scaling={"minReplicas": 0}), namespace=ns)
        client = redis_db.client()
        client.lpush("mail-a", *["{}"] * 700)
        client.lpush("mail-b", *["{}"] * 600)

        docs = render(helm_binary(), *MONITORING_API, namespace=RELEASE_NAMESPACE)
        monitor = find(docs, "ServiceMonitor", "operator")
        service = next(
            d["metadata"]["name"]
            for d in docs
            if d["kind"] == "Service"
            and any(p.get("name") == "metrics" for p in d["spec"]["ports"])
            and d["spec"]["selector"] == monitor["spec"]["selector"]["matchLabels"]
        )
        rules = find(docs, "PrometheusRule")["spec"]["groups"]
        prometheus = prometheus_for(
            scrape_config(monitor, service, f"127.0.0.1:{operator.metrics_port}"), rules
        )

        backlog = "sum by (namespace, taskqueue) (stalk_taskqueue_backlog)"

        def per_namespace() -> dict[str, float]:
            return {
                r["metric"].get("namespace", ""): float(r["value"][1])
                for r in prometheus.query(backlog)
            }

        wait_for(
            lambda: per_namespace() == {namespace: 700.0, other: 600.0},
            60,
            "both TaskQueues' backlogs in Prometheus",
            interval=1,
        )
        time.sleep(2)  # a few more scrapes and rule evaluations
        print(f"\n{backlog}: {per_namespace()}")
        values = yaml.safe_load((CHART / "values.yaml").read_text())
        threshold = values["monitoring"]["prometheusRule"]["backlogThreshold"]
        assert prometheus.query(f"{backlog} > {threshold}") == [], "no TaskQueue is over 1,000"
        assert prometheus.query(f'up{{job="{service}"}} == 1'), "the operator's job is up"
        assert prometheus.query('ALERTS{alertname="StalkOperatorDown"}') == [], (
            "the operator-down alert matches the job the scrape gives"
        )
    finally:
        cluster.kubectl("delete", "namespace", other, "--wait=false", check=False)
