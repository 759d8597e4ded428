"""The chart's alerts, evaluated by Prometheus' own rule engine (``promtool test rules``
from Debian's prometheus package) over series standing for what the scrapes return:
each alert fires when it should, with the labels a receiver routes on, and stays silent
otherwise. ``stale`` in a series is what Prometheus records when a target goes away."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from chart import MONITORING_API, find, helm_binary, render

NAMESPACE = "stalk"


@pytest.fixture(scope="module")
def rule_groups() -> list[dict[str, Any]]:
    docs = render(helm_binary(), *MONITORING_API, "--set=redis.metrics.enabled=true")
    return list(find(docs, "PrometheusRule")["spec"]["groups"])


def promtool_test(
    tmp_path: Path, groups: list[dict[str, Any]], tests: list[dict[str, Any]]
) -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("needs promtool (Debian's prometheus; hack/setup.sh installs it)")
    rules = tmp_path / "rules.yml"
    rules.write_text(yaml.safe_dump({"groups": groups}))
    spec = tmp_path / "tests.yml"
    spec.write_text(
        yaml.safe_dump({"rule_files": [str(rules)], "evaluation_interval": "1m", "tests": tests})
    )
    result = subprocess.run(
        [promtool, "test", "rules", str(spec)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


def annotations(groups: list[dict[str, Any]], alert: str, value: str) -> dict[str, str]:
    """The alert's annotations as Prometheus renders them for ``value``."""
    rule = next(r for g in groups for r in g["rules"] if r.get("alert") == alert)
    return {k: v.replace("{{ $value }}", value) for k, v in rule["annotations"].items()}


def redis_up(pod: str, values: str) -> dict[str, str]:
    labels = f'namespace="{NAMESPACE}", job="stalk-redis-metrics", pod="{pod}"'
    return {"series": f"redis_up{{{labels}}}", "values": values}


def test_redis_down_fires_for_a_node_that_is_down_or_gone_and_not_otherwise(tmp_path, rule_groups):
    firing = [{"exp_labels": {"severity": "critical"}}]

    def case(series: list[dict[str, str]], up_at_6m: str | None) -> dict[str, Any]:
        expected = (
            []
            if up_at_6m is None
            else [
                {
                    **firing[0],
                    "exp_annotations": annotations(rule_groups, "StalkRedisDown", up_at_6m),
                }
            ]
        )
        return {
            "interval": "1m",
            "input_series": series,
            "alert_rule_test": [
                {"eval_time": "6m", "alertname": "StalkRedisDown", "exp_alerts": expected}
            ],
        }

    all_up = [redis_up(f"stalk-redis-{i}", "1x8") for i in range(3)]
    one_says_down = [*all_up[:2], redis_up("stalk-redis-2", "1 1 1 0x5")]
    # The pod is deleted: its exporter's series ends (a staleness marker), nothing says 0.
    one_gone = [*all_up[:2], redis_up("stalk-redis-2", "1 1 1 stale")]
    all_gone = [redis_up(f"stalk-redis-{i}", "1 1 stale") for i in range(3)]
    promtool_test(
        tmp_path,
        rule_groups,
        [
            case(all_up, None),
            case(one_says_down, "2"),
            case(one_gone, "2"),
            case(all_gone, "0"),
        ],
    )


def test_backlog_alert_is_per_taskqueue_and_namespace(tmp_path, rule_groups):
    """Two TaskQueues of one name in two namespaces, 700 and 600 and growing: below the
    1,000 threshold each, so silent; one growing past it fires with its own namespace."""

    def backlog(namespace: str, values: str) -> dict[str, str]:
        labels = f'namespace="{namespace}", taskqueue="emails"'
        return {"series": f"stalk_taskqueue_backlog{{{labels}}}", "values": values}

    def case(series: list[dict[str, str]], firing_in: str | None) -> dict[str, Any]:
        expected = (
            []
            if firing_in is None
            else [
                {
                    "exp_labels": {
                        "severity": "warning",
                        "namespace": firing_in,
                        "taskqueue": "emails",
                    },
                    "exp_annotations": {
                        k: v.replace("{{ $labels.namespace }}", firing_in).replace(
                            "{{ $labels.taskqueue }}", "emails"
                        )
                        for k, v in annotations(rule_groups, "StalkBacklogGrowing", "").items()
                    },
                }
            ]
        )
        return {
            "interval": "1m",
            "input_series": series,
            "alert_rule_test": [
                {"eval_time": "40m", "alertname": "StalkBacklogGrowing", "exp_alerts": expected}
            ],
        }

    promtool_test(
        tmp_path,
        rule_groups,
        [
            case([backlog("team-a", "700+5x40"), backlog("team-b", "600+5x40")], None),
            case([backlog("team-a", "900+10x40"), backlog("team-b", "600+5x40")], "team-a"),
        ],
    )


def test_operator_down_fires_when_its_job_is_down_or_gone(tmp_path, rule_groups):
    def up(values: str) -> dict[str, str]:
        labels = f'namespace="{NAMESPACE}", job="stalk-operator-metrics"'
        return {"series": f"up{{{labels}}}", "values": values}

    def case(values: str, fires: bool) -> dict[str, Any]:
        expected = (
            [
                {
                    "exp_labels": {"severity": "critical"},
                    "exp_annotations": annotations(rule_groups, "StalkOperatorDown", ""),
                }
            ]
            if fires
            else []
        )
        return {
            "interval": "1m",
            "input_series": [up(values)],
            "alert_rule_test": [
                {"eval_time": "9m", "alertname": "StalkOperatorDown", "exp_alerts": expected}
            ],
        }

    promtool_test(
        tmp_path,
        rule_groups,
        [case("1x10", False), case("1 1 0x8", True), case("1 1 stale", True)],
    )
