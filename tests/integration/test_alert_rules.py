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


def test_wait_above_target_fires_only_for_a_taskqueue_late_for_the_whole_period(
    tmp_path, rule_groups
):
    """Two TaskQueues with a 60 s target: one's oldest task waits 90 s and more for ten
    minutes, the other's went over for two minutes only; a third has no target at all
    and a long wait, which is not an alert of this kind."""

    def series(name: str, metric: str, values: str, queue: str | None = None) -> dict[str, str]:
        labels = f'namespace="team", taskqueue="{name}"' + (f', queue="{queue}"' if queue else "")
        return {"series": f"{metric}{{{labels}}}", "values": values}

    wait, target = "stalk_queue_oldest_wait_seconds", "stalk_taskqueue_target_wait_seconds"
    inputs = [
        series("reports", wait, "90+10x10", queue="reports"),
        series("reports", wait, "5x10", queue="default"),
        series("reports", target, "60x10"),
        series("mail", wait, "10 10 80 80 10x7", queue="email"),
        series("mail", target, "60x10"),
        series("batch", wait, "900x10", queue="batch"),
    ]
    description = annotations(rule_groups, "StalkWaitAboveTarget", "")
    expected = {
        "exp_labels": {"severity": "warning", "namespace": "team", "taskqueue": "reports"},
        "exp_annotations": {
            "summary": description["summary"]
            .replace("{{ $labels.namespace }}", "team")
            .replace("{{ $labels.taskqueue }}", "reports"),
            "description": description["description"].replace(
                "{{ $value | humanizeDuration }}", "3m 0s"
            ),
        },
    }
    promtool_test(
        tmp_path,
        rule_groups,
        [
            {
                "interval": "1m",
                "input_series": inputs,
                "alert_rule_test": [
                    {
                        "eval_time": "9m",
                        "alertname": "StalkWaitAboveTarget",
                        "exp_alerts": [expected],
                    },
                    {"eval_time": "3m", "alertname": "StalkWaitAboveTarget", "exp_alerts": []},
                ],
            }
        ],
    )


def test_task_failures_and_restarting_workers_fire_from_flowers_metrics(tmp_path, rule_groups):
    """Flower's counters: one task fails a fifth of its runs, another one in a hundred;
    one worker goes offline and back every two minutes, another stays up."""

    def events(task: str, kind: str, per_minute: int) -> dict[str, str]:
        labels = f'task="{task}", type="{kind}", worker="w-1@team"'
        return {"series": f"flower_events_total{{{labels}}}", "values": f"0+{per_minute}x30"}

    def online(worker: str, values: str) -> dict[str, str]:
        return {"series": f'flower_worker_online{{worker="{worker}"}}', "values": values}

    failing = {"severity": "warning", "task": "reports.render"}
    restarting = {"severity": "warning", "worker": "w-2@team"}

    def rendered(alert: str, labels: dict[str, str], value: str, shown: str) -> dict[str, str]:
        found = annotations(rule_groups, alert, value)
        for name, label in labels.items():
            found = {k: v.replace(f"{{{{ $labels.{name} }}}}", label) for k, v in found.items()}
        return {
            k: v.replace(f"{{{{ {value} | humanizePercentage }}}}", shown) for k, v in found.items()
        }

    promtool_test(
        tmp_path,
        rule_groups,
        [
            {
                "interval": "1m",
                "input_series": [
                    events("reports.render", "task-succeeded", 20),
                    events("reports.render", "task-failed", 5),
                    events("mail.send", "task-succeeded", 99),
                    events("mail.send", "task-failed", 1),
                    online("w-1@team", "1x30"),
                    online("w-2@team", " ".join(["1 0"] * 15)),
                ],
                "alert_rule_test": [
                    {
                        "eval_time": "25m",
                        "alertname": "StalkTaskFailuresHigh",
                        "exp_alerts": [
                            {
                                "exp_labels": failing,
                                "exp_annotations": rendered(
                                    "StalkTaskFailuresHigh", failing, "$value", "20%"
                                ),
                            }
                        ],
                    },
                    {
                        "eval_time": "25m",
                        "alertname": "StalkWorkerRestarting",
                        "exp_alerts": [
                            {
                                "exp_labels": restarting,
                                # 15 minutes of "1 0" pairs: 14 changes, 7 comings back
                                "exp_annotations": rendered(
                                    "StalkWorkerRestarting", restarting, "7", ""
                                ),
                            }
                        ],
                    },
                ],
            }
        ],
    )


def test_beat_not_firing_fires_for_a_beat_hung_gone_or_without_the_lock(tmp_path, rule_groups):
    pod = f'namespace="{NAMESPACE}", pod="stalk-beat-7c9d-x2k4p"'

    def case(lock: str, ticks: str, fires: bool) -> dict[str, Any]:
        firing = {
            "exp_labels": {"severity": "critical"},
            "exp_annotations": annotations(rule_groups, "StalkBeatNotFiring", ""),
        }
        expected = [firing] if fires else []
        return {
            "interval": "1m",
            "input_series": [
                {"series": f"stalk_beat_lock_held{{{pod}}}", "values": lock},
                # Unix seconds of the last tick; promtool's clock starts at 0.
                {"series": f"stalk_beat_last_tick_timestamp_seconds{{{pod}}}", "values": ticks},
            ],
            "alert_rule_test": [
                {"eval_time": "12m", "alertname": "StalkBeatNotFiring", "exp_alerts": expected}
            ],
        }

    promtool_test(
        tmp_path,
        rule_groups,
        [
            case("1x15", "0+60x15", False),  # ticking, lock held
            case("1x15", "0+60x3 180x12", True),  # hung since 3m: the last tick stands still
            case("1 1 stale", "0 60 stale", True),  # the pod is gone
            case("0x15", "0x15", True),  # a standby: nobody fires the schedule
        ],
    )


def taskqueue_alert(
    groups: list[dict[str, Any]],
    alert: str,
    series: dict[str, str],
    fires: bool,
    eval_time: str,
) -> dict[str, Any]:
    """One promtool case for an alert on one TaskQueue (team-a/emails): ``series`` maps
    each metric to its values."""
    labels = {"namespace": "team-a", "taskqueue": "emails"}
    selector = ", ".join(f'{k}="{v}"' for k, v in labels.items())
    rendered = {
        k: v.replace("{{ $labels.namespace }}", "team-a").replace(
            "{{ $labels.taskqueue }}", "emails"
        )
        for k, v in annotations(groups, alert, "").items()
    }
    rule = next(r for g in groups for r in g["rules"] if r.get("alert") == alert)
    expected = [{"exp_labels": {**rule["labels"], **labels}, "exp_annotations": rendered}]
    return {
        "interval": "1m",
        "input_series": [
            {"series": f"{metric}{{{selector}}}", "values": values}
            for metric, values in series.items()
        ],
        "alert_rule_test": [
            {"eval_time": eval_time, "alertname": alert, "exp_alerts": expected if fires else []}
        ],
    }


def test_replicas_not_reached_fires_for_pods_that_do_not_start_or_keep_crashing(
    tmp_path, rule_groups
):
    """The Deployment has the replicas it was given, but they are not ready (crash loop,
    image pull): the alert reads readiness, not the Deployment's replica count."""

    def case(desired: str, current: str, ready: str, fires: bool) -> dict[str, Any]:
        series = {
            "stalk_taskqueue_desired_replicas": desired,
            "stalk_taskqueue_current_replicas": current,
            "stalk_taskqueue_ready_replicas": ready,
        }
        return taskqueue_alert(rule_groups, "StalkReplicasNotReached", series, fires, "20m")

    promtool_test(
        tmp_path,
        rule_groups,
        [
            case("3x25", "3x25", "3x25", False),
            case("3x25", "3x25", "1x25", True),  # crash-looping pods count as replicas
            case("3x25", "1x25", "1x25", True),  # a quota keeps them from being created
            case("3x25", "3x25", "1x15 3x10", False),  # slow to start, then ready
        ],
    )


def test_broker_unreachable_and_reconcile_errors_fire_only_while_they_last(tmp_path, rule_groups):
    cases = [
        # (alert, metric, values, fires, evaluated at)
        ("StalkBrokerUnreachable", "stalk_taskqueue_broker_up", "1x3 0x10", True, "8m"),
        # A minute's blip: the pool rides it out at its fallback size, no page.
        ("StalkBrokerUnreachable", "stalk_taskqueue_broker_up", "1 0 1x10", False, "8m"),
        ("StalkReconcileErrors", "stalk_reconcile_errors_total", "0+1x30", True, "25m"),
        ("StalkReconcileErrors", "stalk_reconcile_errors_total", "0 1 1x30", False, "25m"),
    ]
    promtool_test(
        tmp_path,
        rule_groups,
        [
            taskqueue_alert(rule_groups, alert, {metric: values}, fires, at)
            for alert, metric, values, fires, at in cases
        ],
    )


def test_failure_ratio_stays_silent_for_a_task_that_did_not_run(tmp_path, rule_groups):
    """No runs in the window is no ratio (0/0), not a failure rate; a task that only
    fails is 100 %."""

    def events(task: str, kind: str, values: str) -> dict[str, str]:
        labels = f'task="{task}", type="{kind}", worker="w-1@team"'
        return {"series": f"flower_events_total{{{labels}}}", "values": values}

    labels = {"severity": "warning", "task": "reports.render"}
    rendered = {
        k: v.replace("{{ $labels.task }}", "reports.render").replace(
            "{{ $value | humanizePercentage }}", "100%"
        )
        for k, v in annotations(rule_groups, "StalkTaskFailuresHigh", "").items()
    }
    promtool_test(
        tmp_path,
        rule_groups,
        [
            {
                "interval": "1m",
                "input_series": [
                    events("idle.task", "task-succeeded", "5x40"),
                    events("idle.task", "task-failed", "5x40"),
                    events("reports.render", "task-failed", "0+1x40"),
                ],
                "alert_rule_test": [
                    {
                        "eval_time": "30m",
                        "alertname": "StalkTaskFailuresHigh",
                        "exp_alerts": [{"exp_labels": labels, "exp_annotations": rendered}],
                    }
                ],
            }
        ],
    )


def test_without_scrapes_no_alert_fires_for_what_is_absent():
    """With the ServiceMonitors off, Prometheus never sees the operator or Redis: an
    alert on their absence would page for ever."""
    docs = render(
        helm_binary(),
        *MONITORING_API,
        "--set=redis.metrics.enabled=true",
        "--set=monitoring.serviceMonitor.enabled=false",
    )
    rules = [r for g in find(docs, "PrometheusRule")["spec"]["groups"] for r in g["rules"]]
    assert not [r["alert"] for r in rules if "absent(" in r["expr"] or "vector(0)" in r["expr"]]
    assert "StalkBacklogGrowing" in {r["alert"] for r in rules}
