"""A real Prometheus (Debian's) scrapes a real operator the way the chart's ServiceMonitor
tells the Prometheus Operator to, and answers the queries the alerts and the dashboard
make. No Prometheus Operator runs here; the scrape configuration is what it generates
from the ServiceMonitor: the endpoint's ``honorLabels`` and ``interval``, and the target
labels it attaches (``namespace`` of the Service, ``service``, ``job``, ``endpoint``)."""

from __future__ import annotations

import json
import re
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


def pod_scrape_config(
    pod_monitor: dict[str, Any], target: str, namespace: str, pod_labels: dict[str, str]
) -> dict[str, Any]:
    """The scrape job the Prometheus Operator makes of the PodMonitor's first endpoint:
    its relabelings applied to a static target that carries the pod's namespace and the
    pod-label meta labels Kubernetes service discovery would."""
    endpoint = pod_monitor["spec"]["podMetricsEndpoints"][0]
    meta = {
        "__meta_kubernetes_pod_label_" + re.sub(r"[^a-zA-Z0-9_]", "_", k): v
        for k, v in pod_labels.items()
    }
    return {
        "job_name": f"podMonitor/{RELEASE_NAMESPACE}/{pod_monitor['metadata']['name']}/0",
        "scrape_interval": "1s",
        "metrics_path": endpoint.get("path", "/metrics"),
        "static_configs": [
            {"targets": [target], "labels": {"namespace": namespace, "pod": "w-1", **meta}}
        ],
        "relabel_configs": [
            {"source_labels": r["sourceLabels"], "target_label": r["targetLabel"]}
            for r in endpoint.get("relabelings", [])
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


def test_flower_answers_every_task_query_of_the_dashboard_and_the_alerts(
    workers, broker_env, redis_db, prometheus_for, tmp_path
):
    """A real worker and a real Flower (``celery flower``, as the chart runs it, with
    basic auth); Prometheus scrapes Flower the way the chart's ServiceMonitor says.
    After a few tasks, one of them failing, every Flower metric the dashboard and the
    alerts query is in Prometheus, and their task-level queries answer."""
    from workers import client_app, client_env, running_flower

    workers.start(broker_env, queues=("default",))
    password = "flower-test-password"
    with running_flower(broker_env, tmp_path / "logs", password) as (_, port):
        docs = render(helm_binary(), *MONITORING_API, namespace=RELEASE_NAMESPACE)
        scrape = scrape_config(
            find(docs, "ServiceMonitor", "flower"), "stalk-flower", f"127.0.0.1:{port}"
        )
        scrape["basic_auth"] = {"username": "admin", "password": password}
        prometheus = prometheus_for(scrape, find(docs, "PrometheusRule")["spec"]["groups"])
        dashboard = json.loads(
            next(d for d in docs if d["metadata"]["name"] == "stalk-dashboard")["data"][
                "stalk.json"
            ]
        )
        queries = [
            t["expr"] for p in dashboard["panels"] for t in p["targets"] if "flower_" in t["expr"]
        ]
        names = {n for q in queries for n in re.findall(r"\bflower_[a-z_]+", q)}
        names |= {
            n
            for g in find(docs, "PrometheusRule")["spec"]["groups"]
            for r in g["rules"]
            for n in re.findall(r"\bflower_[a-z_]+", r["expr"])
        }

        def present() -> set[str]:
            return {n for n in names if prometheus.query(f'count({{__name__="{n}"}})')}

        def run(*calls: tuple[object, object]) -> None:
            for result in [
                app.send_task("stalk_worker.tasks.canvas.add", args=args, queue="default")
                for args in calls
            ]:
                result.get(timeout=30, propagate=False)

        # Rates need a counter seen before and after: a first wave makes the series, a
        # second one, with a task that fails, moves them while Prometheus watches.
        with client_app(client_env(redis_db)) as app:
            run((1, 1), (2, 2), ("a", None))
            wait_for(
                lambda: present() == names,
                60,
                f"Flower's {sorted(names)} in Prometheus",
                interval=1,
            )
            time.sleep(2)
            run((3, 3), (4, 4), ("b", None))
        ratio = next(q for q in queries if 'type="task-failed"' in q)
        ratio = ratio.replace("$__rate_interval", "30s")

        def failure_ratio() -> float:
            values = [float(r["value"][1]) for r in prometheus.query(ratio)]
            return max((v for v in values if v == v), default=0.0)  # NaN: nothing finished

        wait_for(
            lambda: failure_ratio() > 0,
            30,
            "the failed task in the failure-ratio panel",
            interval=1,
        )
        print(
            f"\nFlower metrics in Prometheus: {sorted(names)}; failure ratio {failure_ratio():.2f}"
        )


def test_the_agents_wait_histogram_answers_the_dashboards_query_per_task_and_queue(
    workers, broker_env, redis_db, prometheus_for, tmp_path
):
    """A real prefork worker with the agent, its metrics directory set as the operator
    sets it; Prometheus scrapes it the way the chart's PodMonitor says; the dashboard's
    queue-wait panel answers per TaskQueue, task and queue for tasks whose producer
    stamps its send time."""
    from stalk_agent.publish import stamp_send_times, stop_stamping
    from workers import client_app, client_env

    (tmp_path / "agent-metrics").mkdir()
    env = {**broker_env, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "agent-metrics")}
    worker = workers.start(env, queues=("metered",), concurrency=1)
    docs = render(helm_binary(), *MONITORING_API, namespace=RELEASE_NAMESPACE)
    scrape = pod_scrape_config(
        find(docs, "PodMonitor", "workers"),
        f"127.0.0.1:{worker.health_port}",
        "shop",
        {"stalk.dev/taskqueue": "thumbnails", "app.kubernetes.io/component": "worker"},
    )
    prometheus = prometheus_for(scrape, [])
    dashboard = json.loads(
        next(d for d in docs if d["metadata"]["name"] == "stalk-dashboard")["data"]["stalk.json"]
    )
    query = next(
        t["expr"]
        for p in dashboard["panels"]
        for t in p["targets"]
        if "stalk_task_queue_wait_seconds" in t["expr"]
    )
    query = query.replace("$__rate_interval", "30s").replace("$namespace", ".*")
    query = query.replace("$taskqueue", ".*")
    stamp_send_times()
    try:
        with client_app(client_env(redis_db)) as app:

            def wave() -> None:
                # One slot, four 0.5 s tasks: they wait about 0, 0.5, 1 and 1.5 s.
                for result in [
                    app.send_task("stalk_worker.tasks.canvas.sleep", args=(0.5,), queue="metered")
                    for _ in range(4)
                ]:
                    result.get(timeout=30)

            wave()
            wait_for(
                lambda: prometheus.query("stalk_task_queue_wait_seconds_count"),
                30,
                "the agent's histogram in Prometheus",
                interval=1,
            )
            time.sleep(2)
            wave()
    finally:
        stop_stamping()

    def answer() -> list[dict[str, Any]]:
        return [r for r in prometheus.query(query) if r["value"][1] != "NaN"]

    wait_for(answer, 30, "the queue-wait panel's answer", interval=1)
    (series,) = answer()
    labels = series["metric"]
    assert (labels["namespace"], labels["taskqueue"]) == ("shop", "thumbnails")
    assert (labels["task"], labels["queue"]) == ("stalk_worker.tasks.canvas.sleep", "metered")
    p95 = float(series["value"][1])
    print(f"\nqueue wait p95 from the agent through Prometheus: {p95:.2f} s")
    assert 0.5 < p95 <= 5, "the last of four 0.5 s tasks on one slot waited about 1.5 s"
