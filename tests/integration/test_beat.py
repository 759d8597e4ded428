"""Two beat processes with the chart's beat configuration, against one Redis (through
Sentinel, as the chart deploys it): each schedule entry fires once per period, and the
standby takes over when the active beat dies."""

from __future__ import annotations

import itertools
import json
import os
import signal
import sys
import threading
import time

import pytest
import redis
from beats import chart_beat
from chart import find, helm_binary, render
from http_probe import http_body, http_status
from stalk_agent.beat import parse_schedule
from stalk_config import SettingsError
from stalk_devenv.process import ManagedProcess, free_port, wait_until
from stalk_devenv.redis import RedisServer

PERIODS = {"every-2s": 2, "every-3s": 3}
MAX_LOOP = 1  # the lock lasts 5 s, so the takeover test stays short


@pytest.fixture(scope="module")
def beat_pod() -> tuple[list[str], dict[str, str]]:
    return chart_beat(PERIODS, MAX_LOOP)


class Arrivals:
    """Watches each entry's queue and records when every new message lands."""

    def __init__(self, client: redis.Redis, periods: dict[str, float] = PERIODS) -> None:
        self.client = client
        self.periods = periods
        self.times: dict[str, list[float]] = {name: [] for name in periods}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Arrivals:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        seen = dict.fromkeys(self.periods, 0)
        while not self._stop.is_set():
            now = time.monotonic()
            for name in self.periods:
                length = int(self.client.llen(name))
                self.times[name] += [now] * (length - seen[name])
                seen[name] = length
            time.sleep(0.05)

    def between(self, start: float, end: float) -> dict[str, list[float]]:
        return {n: [t for t in ts if start <= t < end] for n, ts in self.times.items()}


def start_two_beats(argv: list[str], env: dict[str, str], workdir) -> list[ManagedProcess]:
    """Two beats of the same command (a rollout overlap, or a stuck pod and its successor)."""
    beats = [
        ManagedProcess(
            f"beat-{i}",
            argv,
            workdir,
            # Two pods have a network each; two processes here need a health port each.
            env={**os.environ, **env, "STALK_AGENT_HEALTH_PORT": str(free_port())},
        )
        for i in (0, 1)
    ]
    for beat in beats:
        beat.start()
    return beats


def await_lock(beats: list[ManagedProcess]) -> None:
    wait_until(
        lambda: any("Acquired lock" in b.log_tail(200) for b in beats),
        30,
        "a beat to take the lock",
    )


def assert_once_per_period(
    arrivals: dict[str, list[float]], window: float, periods: dict[str, float] = PERIODS
) -> None:
    for name, period in periods.items():
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
    beats = start_two_beats([sys.executable, "-m", *command], env, tmp_path)
    with Arrivals(client) as arrivals:
        try:
            await_lock(beats)
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


def test_a_teams_beat_fires_its_own_and_the_values_schedule_once_per_period(
    redis_db, redis_password, tmp_path
):
    """ACME's beat, from its own virtualenv (no Stalk in it), with the agent injected as
    the chart does it: ACME's own every-2 s entry and a values entry every 3 s each fire
    once per period, through two beats sharing the lock."""
    from stalk_agent.install import install
    from team_apps import app_venv

    acme_bin = app_venv("acme")
    agent = tmp_path / "stalk-agent"
    install(agent, beat=True)
    periods = {"acme-billing": 2, "every-3s": 3}
    docs = render(
        helm_binary(),
        "--set", "beat.app=acme_jobs",
        "--set", "beat.agent=Injected",
        "--set", "beat.image.repository=registry.acme.test/jobs",
        "--set", f"beat.maxLoopIntervalSeconds={MAX_LOOP}",
        "--set", "beat.schedule.thumbs.task=acme_jobs.tasks.render.thumbnail",
        "--set", "beat.schedule.thumbs.every=3",
        "--set", "beat.schedule.thumbs.queue=every-3s",
        "--set-json", 'beat.schedule.thumbs.args=["beat", 0]',
    )  # fmt: skip
    pod = find(docs, "Deployment", "-beat")["spec"]["template"]["spec"]
    assert pod["initContainers"][0]["command"][-2:] == ["--beat", "/opt/stalk-agent"]
    container = pod["containers"][0]
    env = {e["name"]: e["value"] for e in container["env"] if "value" in e}
    env.update(
        STALK_BEAT_SCHEDULE=find(docs, "ConfigMap", "-beat-schedule")["data"]["schedule.json"],
        STALK_BROKER_URL=redis_db.url,
        STALK_REDIS_PASSWORD=redis_password,
        PYTHONPATH=str(agent),
        ACME_INVOICE_EVERY="2",
        # ACME's own setting (its config reads it), as the team sets it in beat.extraEnv.
        ACME_RESULT_BACKEND=redis_db.url.replace("redis://", f"redis://:{redis_password}@"),
    )
    client = redis_db.client()
    with Arrivals(client, periods) as arrivals:
        beats = start_two_beats(
            [str(acme_bin / "python"), "-m", *container["command"]], env, tmp_path
        )
        try:
            await_lock(beats)
            start = time.monotonic()
            time.sleep(12)
            assert all(b.running() for b in beats), "a beat exited"
            assert_once_per_period(arrivals.between(start, time.monotonic()), 12, periods)
        finally:
            for beat in beats:
                beat.stop(grace=5)
    invoice = json.loads(client.lindex("acme-billing", 0))
    assert invoice["headers"]["task"] == "acme_jobs.tasks.billing.issue_invoices"


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


def test_a_beat_started_before_its_broker_waits_for_it(beat_pod, tmp_path):
    """A fresh install starts beat while Redis is still coming up: beat waits, then fires,
    rather than exiting into CrashLoopBackOff."""
    command, env = beat_pod
    server = RedisServer(tmp_path / "redis", password="later")
    env.update(STALK_BROKER_URL=server.url, STALK_REDIS_PASSWORD="later", STALK_SENTINEL_MASTER="")
    beat = ManagedProcess(
        "beat", [sys.executable, "-m", *command], tmp_path, env={**os.environ, **env}
    )
    beat.start()
    try:
        wait_until(lambda: "does not answer yet" in beat.log_tail(50), 30, "beat to wait")
        time.sleep(3)
        assert beat.running(), f"beat exited without its broker:\n{beat.log_tail(30)}"
        server.start()
        try:
            client = server.client()
            wait_until(lambda: client.llen("every-2s") >= 1, 40, "beat to fire once Redis is up")
            assert beat.running()
        finally:
            server.stop()
    finally:
        beat.stop(grace=5)


def test_a_beat_that_stops_ticking_fails_its_liveness_probe(beat_pod, tmp_path):
    """Beat hung on a broker that holds its connection without answering fires nothing
    and logs nothing: ``/healthz``, the chart's liveness probe, turns 503 once its loop
    has not ticked for the stale limit, and 200 again when it ticks; ``/metrics`` (what
    the StalkBeatNotFiring alert reads) shows the lock held and the last tick's time
    standing still meanwhile."""
    command, env = beat_pod
    server = RedisServer(tmp_path / "redis", password="secret").start()
    port = free_port()
    env.update(
        STALK_BROKER_URL=server.url,
        STALK_REDIS_PASSWORD="secret",
        STALK_SENTINEL_MASTER="",
        STALK_AGENT_HEALTH_PORT=str(port),
        STALK_AGENT_HEALTH_STALE_SECONDS="4",
    )
    beat = ManagedProcess(
        "beat", [sys.executable, "-m", *command], tmp_path, env={**os.environ, **env}
    )
    beat.start()
    healthz = f"http://127.0.0.1:{port}/healthz"

    def metric(name: str) -> float:
        from prometheus_client.parser import text_string_to_metric_families

        text = http_body(f"http://127.0.0.1:{port}/metrics")
        families = {f.name: f for f in text_string_to_metric_families(text)}
        return float(families[name].samples[0].value)

    try:
        wait_until(lambda: "last beat" in http_body(healthz), 30, "beat's first tick")
        assert http_status(healthz) == 200
        assert metric("stalk_beat_lock_held") == 1
        assert time.time() - metric("stalk_beat_last_tick_timestamp_seconds") < 6
        assert server.process is not None and server.process.pid is not None
        redis_pid = server.process.pid
        os.kill(redis_pid, signal.SIGSTOP)  # the broker hangs, its connections open
        try:
            wait_until(lambda: http_status(healthz) == 503, 30, "the probe to fail")
            assert beat.running(), "hung, not crashed: only the probe can tell"
            assert time.time() - metric("stalk_beat_last_tick_timestamp_seconds") > 4
        finally:
            os.kill(redis_pid, signal.SIGCONT)
        wait_until(lambda: http_status(healthz) == 200, 60, "beat to tick again")
    finally:
        beat.stop(grace=5)
        server.stop()


def test_a_lock_lost_to_a_long_failover_is_taken_again_and_one_held_elsewhere_is_not(
    beat_pod, tmp_path
):
    """When beat cannot renew its lock for longer than it lasts (a failover, say), the
    lock expires: beat takes it again and goes on firing, without a restart. If another
    beat holds it by then, this one stops rather than fire entries twice."""
    command, env = beat_pod
    server = RedisServer(tmp_path / "redis", password="secret").start()
    env.update(
        STALK_BROKER_URL=server.url,
        STALK_REDIS_PASSWORD="secret",
        STALK_SENTINEL_MASTER="",
        STALK_AGENT_HEALTH_PORT="0",
    )
    beat = ManagedProcess(
        "beat", [sys.executable, "-m", *command], tmp_path, env={**os.environ, **env}
    )
    client = server.client()
    beat.start()
    try:
        await_lock([beat])
        (lock,) = client.keys("*lock*")
        client.delete(lock)  # expired while the broker was away
        wait_until(lambda: "took it again" in beat.log_tail(50), 20, "beat to take the lock")
        fired = client.llen("every-2s")
        wait_until(lambda: client.llen("every-2s") > fired, 10, "beat to fire again")
        assert beat.running()

        client.set(lock, "another-beat", px=60_000)  # another beat took it meanwhile
        wait_until(lambda: not beat.running(), 20, "beat to stop")
        assert "LockNotOwnedError" in beat.log_tail(200)
    finally:
        beat.stop(grace=5)
        server.stop()
