"""The fleet: one loop per TaskQueue, fed by the watches, and the liveness it reports."""

from __future__ import annotations

import time

from prometheus_client import CollectorRegistry, generate_latest
from stalk_operator.fleet import Fleet
from stalk_operator.reporting.metrics import Metrics
from stalk_operator.settings import OperatorSettings
from stalk_operator.workload import DeploymentState
from standins import FakeKubernetes
from taskqueues import stored


def fleet() -> Fleet:
    settings = OperatorSettings.from_environ({"STALK_LIVENESS_STALE_SECONDS": "30"})
    return Fleet(settings, FakeKubernetes(), Metrics(CollectorRegistry()), lambda tq, e: None)


async def test_a_taskqueue_deleted_and_created_again_gets_a_fresh_loop():
    f = fleet()
    await f.upsert(stored("tq", ["q"], namespace="ns", uid="old"))
    first = f.loops[("ns", "tq")]
    await f.upsert(stored("tq", ["q"], namespace="ns", uid="new"))
    second = f.loops[("ns", "tq")]
    assert second is not first and second.taskqueue.uid == "new"
    await f.remove(("ns", "tq"))
    assert f.loops == {}
    await f.stop()


async def test_deployment_events_reach_the_loop_before_and_after_it_exists():
    f = fleet()
    state = DeploymentState(2, 2, 2, ("TaskQueue", "tq", "u"))
    f.deployment_changed(("ns", "tq"), state)
    await f.upsert(stored("tq", ["q"], namespace="ns", uid="u"))
    assert f.loops[("ns", "tq")].deployment == state
    f.deployment_changed(("ns", "tq"), None)
    assert f.loops[("ns", "tq")].deployment is None
    await f.stop()


async def test_liveness_names_a_stalled_supervisor_and_a_stuck_write():
    f = fleet()
    await f.upsert(stored("tq", ["q"], namespace="ns", uid="u"))
    assert f.stale() == []
    loop = f.loops[("ns", "tq")]
    loop.acting_since = time.monotonic() - 31
    later = time.monotonic() + 31
    stale = f.stale(now=later)
    assert any("supervisor" in s for s in stale)
    assert any("ns/tq: a write pending" in s for s in stale)
    await f.stop()


async def test_a_taskqueues_series_come_and_go_with_it():
    registry = CollectorRegistry()
    settings = OperatorSettings.from_environ({})
    f = Fleet(settings, FakeKubernetes(), Metrics(registry), lambda tq, e: None)
    await f.upsert(stored("tq", ["q"], namespace="ns", uid="u"))
    f.loops[("ns", "tq")].report.figures.desired_replicas = 3
    f.loops[("ns", "tq")].report.figures.scaled_up = 2
    text = generate_latest(registry).decode()
    assert 'stalk_taskqueue_desired_replicas{namespace="ns",taskqueue="tq"} 3.0' in text
    assert 'stalk_scale_events_total{direction="up",namespace="ns",taskqueue="tq"} 2.0' in text
    await f.remove(("ns", "tq"))
    assert 'taskqueue="tq"' not in generate_latest(registry).decode()
    await f.stop()
