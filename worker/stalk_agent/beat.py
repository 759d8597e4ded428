"""Celery beat for any app: a schedule given as JSON, and a celery-redbeat lock so that a
second beat (a rollout overlap, a stuck pod) never fires an entry twice.

Stalk's own app configures itself from these; any other app gets them from
:class:`stalk_agent.scheduler.Scheduler`, named on its beat's command line.

The schedule format (the chart's ``beat.schedule`` values, as JSON)::

    {"cleanup": {"task": "stalk_worker.tasks.maintenance.cleanup_temp_files",
                 "every": 3600},
     "nightly": {"task": "reports.build", "cron": "0 3 * * *",
                 "kwargs": {"day": "yesterday"}, "queue": "reports"}}

Each entry has ``task`` and exactly one of ``every`` (seconds) or ``cron`` (five fields,
UTC); ``args``, ``kwargs``, ``queue`` and ``priority`` are optional.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from celery.schedules import crontab
from stalk_broker import BrokerEndpoint
from stalk_broker.settings import BrokerSettings
from stalk_config import SettingsError, env

SCHEDULER = "redbeat.RedBeatScheduler"


@dataclass(frozen=True)
class BeatSettings(BrokerSettings):
    beat_schedule: str = env(
        "STALK_BEAT_SCHEDULE",
        "{}",
        "Beat only: the schedule as JSON, `{name: {task, every or cron, args, kwargs, queue}}`.",
    )
    beat_max_loop_interval_seconds: float = env(
        "STALK_BEAT_MAX_LOOP_INTERVAL_SECONDS",
        5.0,
        "Beat only: longest sleep between schedule checks; the beat lock lasts five of them, "
        "so a standby beat takes over that long after the active one dies.",
    )

    def beat_config(self) -> dict[str, Any]:
        """The beat settings of an app: this schedule, behind a redbeat lock."""
        return {
            "beat_schedule": parse_schedule(self.beat_schedule),
            **redbeat_config(
                self.broker(),
                key_prefix=self.global_keyprefix,
                max_loop_interval=self.beat_max_loop_interval_seconds,
            ),
        }


_ENTRY_KEYS = {"task", "every", "cron", "args", "kwargs", "queue", "priority"}


def parse_schedule(text: str) -> dict[str, dict[str, Any]]:
    """Celery's ``beat_schedule`` from the JSON above; a bad entry is an error naming it."""
    try:
        raw = json.loads(text or "{}")
    except json.JSONDecodeError as exc:
        raise SettingsError(f"STALK_BEAT_SCHEDULE is not JSON: {exc}") from None
    if not isinstance(raw, dict):
        raise SettingsError("STALK_BEAT_SCHEDULE must be a JSON object of named entries")
    return {name: _entry(name, spec) for name, spec in raw.items()}


def _entry(name: str, spec: Any) -> dict[str, Any]:
    where = f"beat schedule entry {name!r}"
    if not isinstance(spec, dict):
        raise SettingsError(f"{where} must be an object")
    unknown = set(spec) - _ENTRY_KEYS
    if unknown:
        raise SettingsError(f"{where} has unknown keys {sorted(unknown)}")
    if not isinstance(spec.get("task"), str) or not spec["task"]:
        raise SettingsError(f"{where} needs a task name")
    if ("every" in spec) == ("cron" in spec):
        raise SettingsError(f"{where} needs exactly one of every (seconds) or cron")
    entry: dict[str, Any] = {
        "task": spec["task"],
        "schedule": _every(where, spec["every"]) if "every" in spec else _cron(where, spec["cron"]),
        "args": tuple(spec.get("args", ())),
        "kwargs": dict(spec.get("kwargs", {})),
    }
    options = {key: spec[key] for key in ("queue", "priority") if key in spec}
    if options:
        entry["options"] = options
    return entry


def _every(where: str, seconds: Any) -> timedelta:
    if not isinstance(seconds, int | float) or isinstance(seconds, bool) or seconds <= 0:
        raise SettingsError(f"{where}: every must be a positive number of seconds")
    return timedelta(seconds=seconds)


def _cron(where: str, expression: Any) -> crontab:
    fields = str(expression).split()
    if len(fields) != 5:
        raise SettingsError(f"{where}: cron needs five fields (minute hour day month weekday)")
    minute, hour, day, month, weekday = fields
    try:
        return crontab(
            minute=minute, hour=hour, day_of_month=day, month_of_year=month, day_of_week=weekday
        )
    except ValueError as exc:
        raise SettingsError(f"{where}: bad cron {expression!r}: {exc}") from None


def redbeat_config(
    endpoint: BrokerEndpoint, *, key_prefix: str, max_loop_interval: float
) -> dict[str, Any]:
    """celery-redbeat settings on the broker's Redis, through Sentinel when it has one.

    The lock outlives ``max_loop_interval`` five times over: the running beat renews it
    every loop, and a standby takes over that long after the running one dies.
    """
    options: dict[str, Any] = {"socket_timeout": 10}
    if endpoint.sentinel:
        url = "redis-sentinel://"
        options.update(
            sentinels=list(endpoint.hosts),
            service_name=endpoint.master_name,
            password=endpoint.password,
            db=endpoint.db,
            sentinel_kwargs=endpoint.sentinel_link_kwargs(options["socket_timeout"]),
        )
    else:
        url = endpoint.celery_url()
    tls = {"redbeat_redis_use_ssl": endpoint.celery_ssl()} if endpoint.tls else {}
    return {
        **tls,
        "beat_scheduler": SCHEDULER,
        "beat_max_loop_interval": max_loop_interval,
        "redbeat_redis_url": url,
        # Set explicitly: otherwise redbeat reads the broker's transport options.
        "redbeat_redis_options": options,
        "redbeat_key_prefix": f"{key_prefix}redbeat",
        "redbeat_lock_timeout": int(max_loop_interval * 5),
    }
