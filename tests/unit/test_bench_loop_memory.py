"""Where an idle TaskQueue's memory and time go, in the operator's own objects.

10,000 loops with their snapshots, statuses and metric series, measured with
tracemalloc and grouped by the module that allocated; Kubernetes and the poller are the
stand-ins of the loop's unit tests (kopf's and the clients' share is in the e2e breadth
benchmark's RSS). Prints the figures (`make bench`).
"""

from __future__ import annotations

import asyncio
import gc
import time
import tracemalloc
from collections import Counter

import pytest
from stalk_broker.depth import QueueDepth
from stalk_operator.broker import PoolObservation, Snapshot
from stalk_operator.loop import LoopContext, TaskQueueLoop
from stalk_operator.settings import OperatorSettings
from stalk_operator.workload import DeploymentState
from standins import Clock, FakeKubernetes, FakePollers
from taskqueues import parsed, stored

pytestmark = pytest.mark.bench

COUNT = 10_000


async def test_memory_and_decision_time_per_taskqueue():
    clock, kube = Clock(), FakeKubernetes()
    context = LoopContext(
        settings=OperatorSettings.from_environ({}),
        kube=kube,
        pollers=FakePollers(),
        post_event=lambda tq, e: None,
        writers=asyncio.Semaphore(32),
        clock=clock,
    )
    bodies = [
        stored(f"tq-{i}", [f"q{i}"], namespace="ns", uid=f"u{i}", scaling={"minReplicas": 0})
        for i in range(COUNT)
    ]
    gc.collect()
    tracemalloc.start(1)
    before = tracemalloc.take_snapshot()
    loops = []
    for body in bodies:
        loop = TaskQueueLoop(context, parsed(body), {})
        loop.deployment = DeploymentState(
            0, 0, 0, ("TaskQueue", loop.taskqueue.name, loop.taskqueue.uid)
        )
        loops.append(loop)
    pools = {
        loop.taskqueue.pool: PoolObservation((QueueDepth(f"q{i}", {0: 0, 3: 0, 6: 0, 9: 0}),), 0, 0)
        for i, loop in enumerate(loops)
    }
    timings = []
    for sequence in range(1, 5):
        clock.now += 1
        snapshot = Snapshot(sequence, clock.now, "redis://r:6379/0", pools=pools)
        started = time.perf_counter()
        for loop in loops:
            loop.offer(snapshot)
        timings.append(time.perf_counter() - started)
        while any(loop.acting_since is not None for loop in loops):
            await asyncio.sleep(0)
    gc.collect()
    after = tracemalloc.take_snapshot()
    tracemalloc.stop()
    by_module: Counter[str] = Counter()
    for stat in after.compare_to(before, "filename"):
        name = stat.traceback[0].filename
        short = name.split("site-packages/")[-1].split("/stalk_operator/")[-1]
        by_module[short] += stat.size_diff
    total = sum(by_module.values())
    assert len(kube.of("status")) >= COUNT, "every TaskQueue wrote its first status"
    print(f"\n{COUNT:,} idle TaskQueues: {total / COUNT / 1024:.1f} KiB each, by module:")
    for module, size in by_module.most_common(8):
        print(f"  {size / COUNT:8.0f} B  {module}")
    print(
        "decisions for all of them per snapshot: first (with status writes) "
        f"{timings[0] * 1000:.0f} ms, steady {min(timings[1:]) * 1000:.0f} ms "
        f"({min(timings[1:]) / COUNT * 1e6:.1f} us each)"
    )
