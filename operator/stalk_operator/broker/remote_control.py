"""Busy workers without the agent: ask them through Celery's remote control.

When a pool's workers publish no load records (``agent: Disabled``, or an app that
could not load it), the poller falls back to the question ``celery inspect active`` and
``reserved`` ask: one broadcast on the broker's pidbox exchange, to every worker on it,
answered by each with the tasks it runs and holds. Its cost, per broker and per round:
two ``PUBLISH``es, a reply queue (about 8 more commands), and a wait of up to
``timeout`` for the replies, run in a thread so the poll never waits for it; every worker
on the broker decodes the broadcast. It runs every few seconds, and only while some pool
lacks load records. A worker whose app disables remote control does not answer: its
pool then has no source of busy workers, and its TaskQueue says so.

Replies are keyed by node name, ``<pod>@<namespace>`` (the operator's worker command
sets it), which maps each worker to its pod and pool.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from kombu.connection import Connection
from kombu.pidbox import Mailbox
from stalk_broker import BrokerEndpoint, KeyLayout, WorkerLoad

logger = logging.getLogger(__name__)


class Subscribed(Protocol):
    """A pool's subscription, as far as remote control needs it."""

    @property
    def layout(self) -> KeyLayout: ...


REMOTE_CONTROL_INTERVAL_SECONDS = 5.0
"""How often pools without load records are asked through remote control."""

CONTROL_EXCHANGE = "celery"
"""Celery's ``control_exchange`` default: the pidbox every worker listens on."""


@dataclass(frozen=True)
class PoolHolding:
    """What one pool's workers said they hold."""

    workers: Mapping[str, WorkerLoad]
    """By pod name."""

    @property
    def in_flight(self) -> int:
        return sum(w.in_flight for w in self.workers.values())

    @property
    def busy_workers(self) -> int:
        return sum(1 for w in self.workers.values() if w.busy)


def pool_of(node: str) -> tuple[str, str] | None:
    """``(pool, pod)`` of a node name ``<pod>@<namespace>``; a Deployment's pod is named
    ``<deployment>-<template hash>-<suffix>`` and the Deployment after its TaskQueue."""
    pod, _, namespace = node.partition("@")
    deployment = pod.rsplit("-", 2)[0] if pod.count("-") >= 2 else ""
    if not namespace or not deployment:
        return None
    return f"{namespace}/{deployment}", pod


def group_replies(
    active: list[Mapping[str, Any]], reserved: list[Mapping[str, Any]], now: float
) -> dict[str, PoolHolding]:
    """Every pool's holding, from the replies to ``active`` and ``reserved``."""
    counts: dict[str, dict[str, list[int]]] = {}
    for kind, replies in enumerate((active, reserved)):
        for reply in replies:
            for node, tasks in reply.items():
                found = pool_of(node)
                if found is None or not isinstance(tasks, list):
                    continue
                pool, pod = found
                counts.setdefault(pool, {}).setdefault(pod, [0, 0])[kind] = len(tasks)
    return {
        pool: PoolHolding(
            {
                pod: WorkerLoad(active=a, reserved=r, consuming=True, updated=now)
                for pod, (a, r) in pods.items()
            }
        )
        for pool, pods in counts.items()
    }


class RemoteControl:
    """Broadcasts ``active`` and ``reserved`` to one broker's workers. Blocking: run it in
    a thread. One instance per broker and key prefix (the pidbox lives under it)."""

    def __init__(self, endpoint: BrokerEndpoint, layout: KeyLayout, timeout: float = 1.0):
        options = endpoint.celery_transport_options()
        if layout.global_keyprefix:
            options["global_keyprefix"] = layout.global_keyprefix
        # kombu is not typed throughout.
        self._connection = Connection(  # type: ignore[no-untyped-call]
            endpoint.celery_url(), transport_options=options, ssl=endpoint.celery_ssl() or False
        )
        self._mailbox = Mailbox(CONTROL_EXCHANGE, type="fanout", accept=["json"])  # type: ignore[no-untyped-call]
        self._timeout = timeout

    def ask(self, now: float) -> dict[str, PoolHolding]:
        bound = self._mailbox(self._connection)
        active = bound._broadcast("active", reply=True, timeout=self._timeout) or []
        reserved = bound._broadcast("reserved", reply=True, timeout=self._timeout) or []
        return group_replies(active, reserved, now)

    def close(self) -> None:
        self._connection.release()  # type: ignore[no-untyped-call]


class RemoteControlRounds:
    """One broker's remote-control rounds, for every key prefix its silent pools use: at
    most one in flight, one every :data:`REMOTE_CONTROL_INTERVAL_SECONDS` while a pool
    lacks load records, and answers trusted for three intervals."""

    def __init__(self, endpoint: BrokerEndpoint, label: str, clock: Callable[[], float]):
        self._endpoint, self._label, self._clock = endpoint, label, clock
        self._remote: dict[str, RemoteControl] = {}
        self._held: dict[str, PoolHolding] = {}
        self._held_at = float("-inf")
        self._asking: asyncio.Task[None] | None = None

    def fresh(self, pool: str) -> PoolHolding | None:
        """What the pool's workers last said, unless that is too old to go by."""
        if time.monotonic() - self._held_at > 3 * REMOTE_CONTROL_INTERVAL_SECONDS:
            return None
        return self._held.get(pool)

    def ask_if_due(self, silent: Sequence[Subscribed]) -> None:
        """Start a round for pools without load records, if one is due."""
        due = time.monotonic() - self._held_at >= REMOTE_CONTROL_INTERVAL_SECONDS
        if not silent or not due or (self._asking is not None and not self._asking.done()):
            return
        layouts = {s.layout.global_keyprefix: s.layout for s in silent}
        self._asking = asyncio.create_task(self._ask(layouts), name=f"inspect {self._label}")

    async def ask_now(self, pool: str, layout: KeyLayout) -> PoolHolding | None:
        """A round now, for a scale-down: one every 5 s is too old to know which workers
        a task reached since. Other prefixes' answers are kept."""
        await self._ask({layout.global_keyprefix: layout}, merge=True)
        return self._held.get(pool)

    async def _ask(self, layouts: Mapping[str, KeyLayout], merge: bool = False) -> None:
        held: dict[str, PoolHolding] = {}
        for prefix, layout in layouts.items():
            remote = self._remote.get(prefix)
            if remote is None:
                remote = self._remote[prefix] = RemoteControl(self._endpoint, layout)
            try:
                held.update(await asyncio.to_thread(remote.ask, self._clock()))
            except Exception as exc:
                logger.warning(
                    "remote control on %s failed: %s: %s", self._label, type(exc).__name__, exc
                )
        self._held = {**self._held, **held} if merge else held
        self._held_at = time.monotonic()

    def close(self) -> None:
        if self._asking is not None:
            self._asking.cancel()
        for remote in self._remote.values():
            remote.close()
