"""What each task does, per task name and queue, from a real prefork worker's agent."""

from __future__ import annotations

import time
import urllib.error
import urllib.request
from datetime import UTC

import pytest
from prometheus_client.parser import text_string_to_metric_families
from stalk_agent.publish import stamp_send_times, stop_stamping
from workers import client_app, wait_for

SLEEP = "stalk_worker.tasks.canvas.sleep"
QUEUE = "metered"


def scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as reply:
        text = reply.read().decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def sample(samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


@pytest.fixture
def stamping():
    stamp_send_times()
    yield
    stop_stamping()


def started_at(result, ran: float) -> float:
    """When a finished task started, from its result's end time and its known run time."""
    done = result.date_done
    if done.tzinfo is None:
        done = done.replace(tzinfo=UTC)
    return done.timestamp() - ran


def metered_env(broker_env: dict[str, str], tmp_path) -> dict[str, str]:
    """The worker's environment as the operator renders it: an empty directory (the
    pod's ``emptyDir``) for the pool's metric files."""
    directory = tmp_path / "agent-metrics"
    directory.mkdir()
    return {**broker_env, "PROMETHEUS_MULTIPROC_DIR": str(directory)}


def test_prefork_children_report_what_each_task_did_by_task_and_queue(
    workers, broker_env, stamping, tmp_path
):
    # Two slots, a fresh child for every task: what children record must outlive them.
    worker = workers.start(
        metered_env(broker_env, tmp_path),
        queues=[QUEUE],
        concurrency=2,
        extra_args=["--max-tasks-per-child", "1"],
    )
    labels = {"task": SLEEP, "queue": QUEUE}
    true_waits: list[float] = []
    with client_app(broker_env) as app:
        # Six 1.5 s tasks on two slots: each pair waits for the one before.
        sent = []
        for _ in range(6):
            sent.append((time.time(), app.send_task(SLEEP, args=(1.5,), queue=QUEUE)))
        for at, result in sent:
            result.get(timeout=60)
            true_waits.append(started_at(result, ran=1.5) - at)
        # Sent for 2 s later: its wait counts from when it was due, not from its send.
        at = time.time()
        ahead = app.send_task(SLEEP, args=(0,), queue=QUEUE, countdown=2)
        ahead.get(timeout=30)
        true_waits.append(started_at(ahead, ran=0) - (at + 2))
        stop_stamping()
        app.send_task(SLEEP, args=(0,), queue=QUEUE).get(timeout=30)
        failing = app.send_task("stalk_worker.tasks.canvas.add", args=("a", None), queue=QUEUE)
        failing.get(timeout=30, propagate=False)

    def counted() -> bool:
        samples = scrape(worker.health_port)
        return sample(samples, "stalk_task_queue_wait_seconds_count", **labels) == 7

    wait_for(counted, 10, "seven stamped waits on /metrics")
    samples = scrape(worker.health_port)
    total = sample(samples, "stalk_task_queue_wait_seconds_sum", **labels)
    truth = sum(true_waits)
    print(
        f"\n7 stamped tasks (2 slots, 1.5 s each, one sent ahead): waited {total:.2f} s in "
        f"all; their start times say {truth:.2f} s"
    )
    # Queued behind each other, they cannot have waited less than 0+0+1.5+1.5+3+3 s.
    assert total >= 7.5, total
    # Each start is read back from the task's end (1.5 s of sleep before it): a few tens
    # of ms each. Counting the one sent ahead from its send would add 2 s.
    assert abs(total - truth) <= 1.0, (total, truth)
    started = sample(samples, "stalk_tasks_started_total", **labels)
    assert started == 8, "seven stamped and one not: started minus waits is the unstamped"
    assert sample(samples, "stalk_tasks_received_total", **labels) == 8
    assert sample(samples, "stalk_tasks_finished_total", state="SUCCESS", **labels) == 8
    ran = sample(samples, "stalk_task_runtime_seconds_sum", **labels)
    assert 9 <= ran <= 12, f"six 1.5 s runs and two instant ones: {ran:.2f} s"
    add = {"task": "stalk_worker.tasks.canvas.add", "queue": QUEUE}
    assert sample(samples, "stalk_tasks_finished_total", state="FAILURE", **add) == 1
    assert worker.beating()


def test_an_app_that_imported_prometheus_client_first_runs_without_wait_metrics(
    workers, broker_env, tmp_path
):
    """Outside a pod the operator renders (no ``PROMETHEUS_MULTIPROC_DIR``), an app that
    imported prometheus-client first keeps its metrics its own; the agent says it cannot
    count waits, and the worker runs as before."""
    app_dir = tmp_path / "early"
    app_dir.mkdir()
    (app_dir / "early_metrics_app.py").write_text(
        "import prometheus_client  # the app's own metrics, single-process\n"
        "from stalk_worker.app import app\n"
    )
    worker = workers.start(
        broker_env, queues=[QUEUE], app="early_metrics_app", pythonpath=[app_dir]
    )
    with client_app(broker_env) as client:
        client.send_task(SLEEP, args=(0,), queue=QUEUE).get(timeout=30)
    assert "task wait metrics off" in worker.log()
    with pytest.raises(urllib.error.HTTPError):
        scrape(worker.health_port)
