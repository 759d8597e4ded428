"""Two beat processes with the chart's beat configuration, against one Redis (through
Sentinel, as the chart deploys it): each schedule entry fires once per period, and the
standby takes over when the active beat dies."""

from __future__ import annotations

import itertools
import json
import os
import sys
import threading
import time

import pytest
import redis
from chart import find, helm_binary, render
from stalk_agent.beat import parse_schedule
from stalk_config import SettingsError
from stalk_devenv.process import ManagedProcess, wait_until

PERIODS = {"every-2s": 2, "every-3s": 3}
MAX_LOOP = 1  # the lock lasts 5 s, so the takeover test stays short


@pytest.fixture(scope="module")
def beat_pod() -> tuple[list[str], dict[str, str]]:
    """The chart's beat command and literal environment, schedule included."""
    args = ["--set", f"beat.maxLoopIntervalSeconds={MAX_LOOP}"]
    for name, period in PERIODS.items():
        args += [
            "--set",
            f"beat.schedule.{name}.task=stalk_worker.tasks.canvas.add",
            "--set",
            f"beat.schedule.{name}.every={period}",
            "--set",
            f"beat.schedule.{name}.queue={name}",
            "--set-json",
            f"beat.schedule.{name}.args=[1,{period}]",
        ]
    docs = render(helm_binary(), *args)
    container = find(docs, "Deployment", "-beat")["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e["value"] for e in container["env"] if "value" in e}
    env["STALK_BEAT_SCHEDULE"] = find(docs, "ConfigMap", "-beat-schedule")["data"]["schedule.json"]
    return container["command"], env


class Arrivals:
    """Watches each entry's queue and records when every new message lands."""

    def __init__(self, client: redis.Redis) -> None:
        self.client = client
        self.times: dict[str, list[float]] = {name: [] for name in PERIODS}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Arrivals:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        seen = dict.fromkeys(PERIODS, 0)
        while not self._stop.is_set():
            now = time.monotonic()
            for name in PERIODS:
                length = int(self.client.llen(name))
                self.times[name] += [now] * (length - seen[name])
                seen[name] = length
            time.sleep(0.05)

    def between(self, start: float, end: float) -> dict[str, list[float]]:
        return {n: [t for t in ts if start <= t < end] for n, ts in self.times.items()}


def assert_once_per_period(arrivals: dict[str, list[float]], window: float) -> None:
    for name, period in PERIODS.items():
        times = arrivals[name]
        expected = window / period
        assert expected - 1.5 <= len(times) <= expected + 1.5, (
            f"{name}: {len(times)} firings in {window:.0f}s, expected about {expected:.1f}"
        )
        gaps = [b - a for a, b in itertools.pairwise(times)]
        assert all(gap > period * 0.5 for gap in gaps), f"{name} fired twice in a period: {gaps}"


def test_two_beats_fire_each_entry_once_per_period(sentinel_group, beat_pod, tmp_path):
    command, env = beat_pod
    env.update(
        STALK_BROKER_URL=sentinel_group.broker_url,
        STALK_SENTINEL_MASTER=sentinel_group.master_name,
        STALK_REDIS_PASSWORD=sentinel_group.password or "",
    )
    client = sentinel_group.master().client()
    client.flushall()
    argv = [sys.executable, "-m", *command]  # `celery ...` run by this interpreter
    beats = [ManagedProcess(f"beat-{i}", argv, tmp_path, env={**os.environ, **env}) for i in (0, 1)]
    with Arrivals(client) as arrivals:
        for beat in beats:
            beat.start()
        try:
            wait_until(
                lambda: any("Acquired lock" in b.log_tail(200) for b in beats),
                30,
                "a beat to take the lock",
            )
            start = time.monotonic()
            time.sleep(12)
            both_running = arrivals.between(start, time.monotonic())
            assert all(b.running() for b in beats), "a beat exited"
            holders = [b for b in beats if "Acquired lock" in b.log_tail(200)]
            assert len(holders) == 1, "both beats claim the lock"
            assert_once_per_period(both_running, 12)

            # The active beat dies without releasing the lock; the standby takes over
            # once the lock expires (5 x max loop interval) and nothing fires twice.
            active, standby = holders[0], next(b for b in beats if b is not holders[0])
            killed = time.monotonic()
            active.kill()
            wait_until(
                lambda: "Acquired lock" in standby.log_tail(200), 30, "the standby to take over"
            )
            print(f"\nbeat takeover after SIGKILL: {time.monotonic() - killed:.1f}s")
            resumed = time.monotonic()
            time.sleep(9)
            assert_once_per_period(arrivals.between(resumed, time.monotonic()), 9)
        finally:
            for beat in beats:
                beat.stop(grace=5)
    message = json.loads(client.lindex("every-3s", 0))
    assert message["headers"]["task"] == "stalk_worker.tasks.canvas.add"


@pytest.mark.parametrize(
    ("schedule", "message"),
    [
        ("[1]", "JSON object"),
        ('{"a": {"every": 5}}', "needs a task"),
        ('{"a": {"task": "t"}}', "exactly one of every"),
        ('{"a": {"task": "t", "every": 5, "cron": "* * * * *"}}', "exactly one of every"),
        ('{"a": {"task": "t", "every": -1}}', "positive"),
        ('{"a": {"task": "t", "cron": "* * *"}}', "five fields"),
        ('{"a": {"task": "t", "cron": "99 * * * *"}}', "bad cron"),
        ('{"a": {"task": "t", "every": 5, "when": 1}}', "unknown keys"),
    ],
)
def test_bad_schedules_are_refused_with_the_entry_named(schedule, message):
    with pytest.raises(SettingsError, match=message):
        parse_schedule(schedule)


def test_schedule_entries_become_celery_entries():
    entries = parse_schedule(
        '{"n": {"task": "t", "cron": "0 3 * * 1", "kwargs": {"x": 1}, "queue": "reports"}}'
    )
    entry = entries["n"]
    assert entry["task"] == "t" and entry["kwargs"] == {"x": 1}
    assert entry["options"] == {"queue": "reports"}
    assert entry["schedule"].hour == {3} and entry["schedule"].day_of_week == {1}
