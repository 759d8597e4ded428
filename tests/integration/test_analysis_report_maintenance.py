"""Analysis, reports and maintenance tasks through a real worker and broker."""

from __future__ import annotations

import csv
import json
import os
import time
from datetime import UTC, datetime, timedelta

import pytest
from workers import client_app

pytestmark = pytest.mark.integration

TEXTS = [
    "The quick brown fox jumps over the lazy dog. It was not amused!",
    "Le renard brun rapide saute par-dessus le chien paresseux. Il n'était pas content.",
    "Der schnelle braune Fuchs springt über den faulen Hund. Er war nicht erfreut.",
]


def test_language_detection_and_statistics(workers, broker_env):
    workers.start(broker_env, queues=["data_analysis"])
    with client_app(broker_env) as app:
        out = app.send_task("stalk_worker.tasks.analysis.analyze_texts", args=[TEXTS]).get(
            timeout=60
        )
    assert [t["language"] for t in out["texts"]] == ["en", "fr", "de"]
    assert out["languages"] == {"en": 1, "fr": 1, "de": 1}
    assert out["texts"][0]["words"] == 13
    assert out["texts"][0]["sentences"] == 2


def test_report_written_in_every_format(workers, broker_env, tmp_path):
    rows = [
        {"region": "eu", "amount": 10},
        {"region": "us", "amount": 5},
        {"region": "eu", "amount": 30},
        {"region": "us", "amount": "7.5"},
    ]
    workers.start(broker_env, queues=["reports"])
    with client_app(broker_env) as app:
        out = app.send_task(
            "stalk_worker.tasks.reports.generate_report",
            kwargs={
                "name": "sales",
                "rows": rows,
                "group_by": "region",
                "metrics": ["amount"],
                "report_id": "2026-11",
            },
        ).get(timeout=30)
        bad = app.send_task(
            "stalk_worker.tasks.reports.generate_report",
            kwargs={"name": "../escape", "rows": rows, "group_by": "region"},
        )
        with pytest.raises(Exception, match="simple file name"):
            bad.get(timeout=30)
    assert set(out["paths"]) == {"csv", "json", "html"}
    with open(out["paths"]["csv"]) as handle:
        table = list(csv.DictReader(handle))
    assert [(r["region"], r["count"], r["amount_sum"], r["amount_avg"]) for r in table] == [
        ("eu", "2", "40.0", "20.0"),
        ("us", "2", "12.5", "6.25"),
    ]
    assert json.loads(open(out["paths"]["json"]).read())["rows"][0]["amount_max"] == 30.0
    html = open(out["paths"]["html"]).read()
    assert "<td>eu</td>" in html and "<title>sales by region</title>" in html
    assert out["paths"]["csv"].startswith(str(tmp_path / "reports" / "sales"))


def test_cleanup_temp_files_honours_age_and_dry_run(workers, broker_env, tmp_path):
    scratch = tmp_path / "scratch"
    (scratch / "sub").mkdir(parents=True)
    old, new = scratch / "sub" / "old.bin", scratch / "new.bin"
    old.write_bytes(b"x" * 100)
    new.write_bytes(b"y")
    two_days_ago = time.time() - 2 * 86400
    os.utime(old, (two_days_ago, two_days_ago))
    workers.start(broker_env, queues=["maintenance"])
    with client_app(broker_env) as app:
        task = "stalk_worker.tasks.maintenance.cleanup_temp_files"
        dry = app.send_task(task, kwargs={"dry_run": True}).get(timeout=30)
        assert (dry["removed"], dry["bytes"], old.exists()) == (1, 100, True)
        real = app.send_task(task).get(timeout=30)
    assert (real["removed"], old.exists(), new.exists()) == (1, False, True)


def test_cleanup_expired_results_without_ttl(workers, broker_env, redis_db):
    client = redis_db.client()
    long_ago = (datetime.now(UTC) - timedelta(days=3)).isoformat()
    recently = (datetime.now(UTC) - timedelta(hours=1)).isoformat()
    client.set("celery-task-meta-old", json.dumps({"status": "SUCCESS", "date_done": long_ago}))
    client.set("celery-task-meta-new", json.dumps({"status": "SUCCESS", "date_done": recently}))
    client.set("celery-task-meta-ttl", json.dumps({"date_done": long_ago}), ex=500)
    workers.start(broker_env, queues=["maintenance"])
    with client_app(broker_env) as app:
        task = "stalk_worker.tasks.maintenance.cleanup_expired_results"
        dry = app.send_task(task, kwargs={"dry_run": True}).get(timeout=30)
        assert client.exists("celery-task-meta-old")
        real = app.send_task(task).get(timeout=30)
    assert (dry["deleted"], real["deleted"], real["ttl_set"]) == (1, 1, 1)
    assert not client.exists("celery-task-meta-old")
    assert 0 < client.ttl("celery-task-meta-new") <= 23 * 3600
    assert client.ttl("celery-task-meta-ttl") <= 500, "keys with a TTL are left alone"


def test_broker_report_counts_every_priority_list_and_unacked(workers, broker_env, redis_db):
    with client_app(broker_env) as app:
        for priority in (0, 5, 9):
            app.send_task(
                "stalk_worker.tasks.canvas.add", args=(1, 1), queue="email", priority=priority
            )
        workers.start(broker_env, queues=["maintenance"])
        report = app.send_task("stalk_worker.tasks.maintenance.broker_report").get(timeout=30)
        health = app.send_task("stalk_worker.tasks.maintenance.health_check").get(timeout=30)
    assert report["queues"]["email"] == {
        "total": 3,
        "by_priority": {"0": 1, "3": 1, "6": 0, "9": 1},
    }
    assert report["queues"]["reports"]["total"] == 0
    assert report["unacked"] >= 1, "the running broker_report task itself is unacked (acks_late)"
    assert health["broker"] == "ok"
