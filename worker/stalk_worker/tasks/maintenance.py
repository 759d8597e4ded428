"""Housekeeping: expired results, old scratch files, a broker report, a health check.

The cleanups take ``dry_run`` and report what they would remove, so an operator can see
the effect before scheduling them in beat.
"""

from __future__ import annotations

import json
import time
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any

import redis
from celery import shared_task
from stalk_broker import KeyLayout
from stalk_broker.depth import (
    BINDING_PREFIX,
    fold_queue_depths,
    parse_binding,
    queue_depth_commands,
)

from stalk_worker.routing import ALL_QUEUES
from stalk_worker.runtime import settings
from stalk_worker.taskkit import RETRY_TRANSIENT, TransientError, broker_client

RESULT_KEY_PATTERNS = ("celery-task-meta-*", "celery-taskset-meta-*")


def _layout() -> KeyLayout:
    config = settings()
    return KeyLayout(global_keyprefix=config.global_keyprefix, priority_steps=config.priority_steps)


def _decode(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


@shared_task(
    name="stalk_worker.tasks.maintenance.cleanup_expired_results",
    soft_time_limit=600,
    time_limit=660,
    **RETRY_TRANSIENT,
)
def cleanup_expired_results(
    self: Any, dry_run: bool = False, scan_count: int = 500
) -> dict[str, Any]:
    """Remove results that outlived ``result_expires`` but never got a TTL.

    Redis expires results by TTL, so Celery's own ``backend_cleanup`` does nothing there;
    results stored while ``result_expires`` was unset, or by clients with other settings,
    stay forever. Those older than the limit are deleted; younger ones get the TTL they
    should have had.
    """
    config = settings()
    client = broker_client()
    now = time.time()
    deleted = given_ttl = 0
    try:
        for pattern in RESULT_KEY_PATTERNS:
            for key in client.scan_iter(match=config.global_keyprefix + pattern, count=scan_count):
                if client.ttl(key) != -1:
                    continue
                age = now - _finished_at(client.get(key), default=now)
                remaining = int(config.result_expires_seconds - age)
                if remaining <= 0:
                    deleted += 1
                    if not dry_run:
                        client.delete(key)
                else:
                    given_ttl += 1
                    if not dry_run:
                        client.expire(key, remaining)
    except redis.ConnectionError as exc:
        raise TransientError(str(exc)) from None
    return {"deleted": deleted, "ttl_set": given_ttl, "dry_run": dry_run}


def _finished_at(raw: bytes | str | None, default: float) -> float:
    try:
        done = json.loads(raw or b"{}").get("date_done")
        return datetime.fromisoformat(done).timestamp() if done else default
    except (ValueError, TypeError, AttributeError):
        return default


@shared_task(
    name="stalk_worker.tasks.maintenance.cleanup_temp_files", soft_time_limit=600, time_limit=660
)
def cleanup_temp_files(
    max_age_seconds: int = 86400, dry_run: bool = False, directory: str | None = None
) -> dict[str, Any]:
    """Delete files older than ``max_age_seconds`` under the scratch directory."""
    root = Path(directory or settings().scratch_dir)
    if not root.is_dir():
        return {"removed": 0, "bytes": 0, "dry_run": dry_run, "directory": str(root)}
    cutoff = time.time() - max_age_seconds
    removed = freed = 0
    for path in sorted(root.rglob("*")):
        if path.is_symlink() or not path.is_file():
            continue
        stat = path.stat()
        if stat.st_mtime < cutoff:
            removed += 1
            freed += stat.st_size
            if not dry_run:
                path.unlink(missing_ok=True)
    return {"removed": removed, "bytes": freed, "dry_run": dry_run, "directory": str(root)}


def _is_control_queue(name: str) -> bool:
    """Celery's own broadcast and reply queues, which hold no tasks."""
    return name.startswith(("celery.pidbox", "celeryev.")) or ".reply." in name


def known_queues(client: redis.Redis, layout: KeyLayout) -> list[str]:
    """Stalk's own queues plus every queue kombu has bound on this broker."""
    queues = set(ALL_QUEUES)
    for key in client.scan_iter(match=layout.prefixed(BINDING_PREFIX + "*"), count=500):
        for member in client.smembers(key):
            name = parse_binding(member, layout.separator)
            if name and not _is_control_queue(name):
                queues.add(name)
    return sorted(queues)


@shared_task(
    name="stalk_worker.tasks.maintenance.broker_report",
    soft_time_limit=60,
    time_limit=90,
    **RETRY_TRANSIENT,
)
def broker_report(self: Any, queues: list[str] | None = None) -> dict[str, Any]:
    """Waiting messages per queue, split by priority list, plus unacknowledged ones."""
    layout = _layout()
    client = broker_client()
    try:
        names = queues or known_queues(client, layout)
        pipe = client.pipeline(transaction=False)
        queue_depth_commands(pipe, layout, names)
        pipe.hlen(layout.prefixed("unacked"))
        *replies, unacked = pipe.execute()
    except redis.ConnectionError as exc:
        raise TransientError(str(exc)) from None
    depths = fold_queue_depths(layout, names, replies)
    return {
        "queues": {
            d.queue: {"total": d.total, "by_priority": {str(k): v for k, v in d.by_step.items()}}
            for d in depths
        },
        "waiting": sum(d.total for d in depths),
        "unacked": int(unacked),
    }


@shared_task(name="stalk_worker.tasks.maintenance.health_check", soft_time_limit=20, time_limit=30)
def health_check() -> dict[str, Any]:
    """Round-trips the broker, writes and reads scratch space; raises if either fails."""
    client = broker_client()
    started = time.perf_counter()
    client.ping()
    probe = f"{settings().global_keyprefix}stalk:health:{uuid.uuid4()}"
    client.set(probe, "ok", ex=60)
    assert _decode(client.get(probe) or b"") == "ok", "broker lost a write"
    client.delete(probe)
    broker_ms = round((time.perf_counter() - started) * 1000, 2)
    scratch = Path(settings().scratch_dir)
    scratch.mkdir(parents=True, exist_ok=True)
    marker = scratch / f".health-{uuid.uuid4()}"
    marker.write_text("ok")
    marker.unlink()
    return {"broker": "ok", "broker_ms": broker_ms, "scratch": str(scratch)}
