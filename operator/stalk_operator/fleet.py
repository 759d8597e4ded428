"""Every TaskQueue this operator scales: their loops, the pollers that feed them, and the
supervision that keeps both going.

kopf's watches feed the fleet (:meth:`Fleet.upsert`, :meth:`Fleet.remove`,
:meth:`Fleet.deployment_changed`); each poller hands its snapshots to the loops of its
pools. A supervisor task ticks every second: it restarts a poller whose task ended,
lets loops without a fresh snapshot retry what they wait for, and keeps the figures the
liveness probe reads. No asyncio task is kept per TaskQueue.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

from stalk_broker import BrokerEndpoint

from stalk_operator.actuation import Kubernetes
from stalk_operator.broker import BrokerPoller, PollerRegistry, Snapshot
from stalk_operator.loop import EventSink, LoopContext, TaskQueueLoop
from stalk_operator.model import parse_taskqueue
from stalk_operator.reporting.metrics import Metrics
from stalk_operator.settings import OperatorSettings
from stalk_operator.workload import DeploymentState

logger = logging.getLogger(__name__)

TICK_SECONDS = 1.0

Key = tuple[str, str]


class Fleet:
    def __init__(
        self,
        settings: OperatorSettings,
        kube: Kubernetes,
        metrics: Metrics,
        post_event: EventSink,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.pollers = PollerRegistry(self._new_poller)
        self.metrics = metrics
        self.context = LoopContext(
            settings,
            kube,
            self.pollers,
            post_event,
            writers=asyncio.Semaphore(settings.api_concurrency),
            clock=clock,
        )
        self.loops: dict[Key, TaskQueueLoop] = {}
        self.deployments: dict[Key, DeploymentState] = {}
        self._by_pool: dict[str, TaskQueueLoop] = {}
        # The scrape runs in the metrics server's thread: it reads a copy of the dict.
        metrics.taskqueues.source = lambda: [
            loop.report.figures for loop in self.loops.copy().values()
        ]
        self._supervisor: asyncio.Task[None] | None = None
        self.last_tick = time.monotonic()

    # -- inputs from the watches --------------------------------------------------------

    async def upsert(self, body: Mapping[str, Any]) -> None:
        """A TaskQueue as the API server has it now (created, changed, or listed)."""
        taskqueue = parse_taskqueue(body, self.settings)
        loop = self.loops.get(taskqueue.key)
        if loop is not None and loop.taskqueue.uid != taskqueue.uid:
            await self.remove(taskqueue.key)  # deleted and created again between events
            loop = None
        if loop is None:
            loop = TaskQueueLoop(self.context, taskqueue, body.get("status") or {})
            loop.deployment = self.deployments.get(taskqueue.key)
            self.loops[taskqueue.key] = self._by_pool[taskqueue.pool] = loop
            loop.offer(None)
        elif loop.taskqueue.generation != taskqueue.generation:
            loop.taskqueue = taskqueue
            loop.offer(None)
        else:
            loop.taskqueue = taskqueue

    async def remove(self, key: Key) -> None:
        loop = self.loops.pop(key, None)
        if loop is not None:
            self._by_pool.pop(loop.taskqueue.pool, None)
            await loop.close()

    def deployment_changed(self, key: Key, state: DeploymentState | None) -> None:
        if state is None:
            self.deployments.pop(key, None)
        else:
            self.deployments[key] = state
        loop = self.loops.get(key)
        if loop is not None:
            loop.deployment = state

    # -- snapshots ----------------------------------------------------------------------

    def _new_poller(self, endpoint: BrokerEndpoint) -> BrokerPoller:
        return BrokerPoller(
            endpoint,
            metrics=self.metrics,
            deliver=self._deliver,
            timeout_seconds=self.settings.broker_timeout_seconds,
            stale_after_seconds=self.settings.stale_worker_seconds,
            clock=self.context.clock,
        )

    def _deliver(self, snapshot: Snapshot, pools: tuple[str, ...]) -> None:
        for pool in pools:
            loop = self._by_pool.get(pool)
            if loop is not None:
                loop.offer(snapshot)

    # -- supervision --------------------------------------------------------------------

    def start(self) -> None:
        self._supervisor = asyncio.create_task(self._supervise(), name="fleet supervisor")

    async def stop(self) -> None:
        if self._supervisor is not None:
            self._supervisor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._supervisor
        for key in list(self.loops):
            await self.remove(key)
        await self.pollers.close()

    async def _supervise(self) -> None:
        while True:
            await asyncio.sleep(TICK_SECONDS)
            self.last_tick = time.monotonic()
            try:
                for poller in self.pollers:
                    poller.ensure_running()
                for loop in list(self.loops.values()):
                    loop.tick(self.last_tick, TICK_SECONDS)
            except Exception:
                logger.exception("fleet supervision failed; carrying on")

    def stale(self, now: float | None = None) -> list[str]:
        """What has not moved for longer than the liveness bound; empty when healthy."""
        now = time.monotonic() if now is None else now
        bound = self.settings.liveness_stale_seconds
        found = []
        if now - self.last_tick > bound:
            found.append(f"fleet supervisor silent for {now - self.last_tick:.0f}s")
        for poller in self.pollers:
            silent = now - poller.last_cycle_at
            if silent > bound + poller.interval:
                found.append(f"poller of {poller.label} silent for {silent:.0f}s")
        for loop in self.loops.values():
            since = loop.acting_since
            if since is not None and now - since > bound:
                found.append(f"{loop.taskqueue.pool}: a write pending for {now - since:.0f}s")
        return found
