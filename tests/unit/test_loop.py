"""One TaskQueue's loop, driven through its context and a clock the test moves.

Kubernetes and the broker's poller are stand-ins here that record what the loop asks of
them (the loop's contract); the e2e tests run the same loop against a real API server,
real Redis and real workers.
"""

from __future__ import annotations

import asyncio
import logging

import httpx2
import pytest
from lightkube.core.exceptions import ApiError
from stalk_broker.depth import QueueDepth
from stalk_broker.worker_state import WorkerLoad
from stalk_operator.broker import PoolObservation, Snapshot
from stalk_operator.loop import LoopContext, TaskQueueLoop
from stalk_operator.settings import OperatorSettings
from stalk_operator.workload import DeploymentState
from standins import Clock, FakeKubernetes, FakePollers
from taskqueues import parsed, stored

BROKER = "redis://localhost:6379/0"


class Harness:
    def __init__(self, **spec) -> None:
        self.clock = Clock()
        self.kube = FakeKubernetes()
        self.pollers = FakePollers()
        self.events: list[tuple[str, str, str]] = []
        self.body = stored("emails", ["email"], namespace="ns", uid="uid-1", **spec)
        self.taskqueue = parsed(self.body, STALK_DEFAULT_BROKER_URL=BROKER)
        context = LoopContext(
            settings=OperatorSettings.from_environ({"STALK_DEFAULT_BROKER_URL": BROKER}),
            kube=self.kube,
            pollers=self.pollers,
            post_event=lambda tq, e: self.events.append((e.type, e.reason, e.message)),
            writers=asyncio.Semaphore(1),
            clock=self.clock,
        )
        self.loop = TaskQueueLoop(context, self.taskqueue, {})
        self.sequence = 0

    def deployment(self, replicas: int, owner: tuple[str, str, str] | None = None) -> None:
        owner = owner or ("TaskQueue", "emails", "uid-1")
        self.loop.deployment = DeploymentState(replicas, replicas, replicas, owner)

    def snapshot(self, backlog: int = 0, in_flight: int = 0, busy: int = 0, error=None):
        self.sequence += 1
        pools = {}
        if error is None:
            depth = QueueDepth("email", {0: backlog, 3: 0, 6: 0, 9: 0})
            pools["ns/emails"] = PoolObservation((depth,), in_flight, busy)
        return Snapshot(self.sequence, self.clock.now, BROKER, pools=pools, error=error)

    async def step(self, snapshot: Snapshot | None = None, seconds: float = 1.0) -> None:
        """Let ``seconds`` pass, offer the snapshot, and wait until its writes are done."""
        self.clock.now += seconds
        self.loop.offer(snapshot)
        while self.loop.acting_since is not None:
            await asyncio.sleep(0)

    async def ready(self, replicas: int = 1) -> None:
        """Subscribed, with its Deployment applied and in the cache."""
        await self.step()
        self.deployment(replicas)
        await self.step(self.snapshot())


def answer(code: int, reason: str = "x", message: str = "starting") -> ApiError:
    """An error answer from the API server, as lightkube raises it."""
    error = ApiError.__new__(ApiError)
    error.status = type("S", (), {"code": code, "reason": reason, "message": message})()
    return error


def condition(status: dict, kind: str) -> dict:
    return next(c for c in status["conditions"] if c["type"] == kind)


async def test_a_new_taskqueue_subscribes_then_applies_its_deployment():
    h = Harness(scaling={"minReplicas": 0})
    await h.step()
    assert len(h.pollers.subscribed) == 1
    _, subscription = h.pollers.subscribed[0]
    assert subscription.pool == "ns/emails" and subscription.queues == ("email",)
    await h.step()
    assert h.kube.of("apply") == [("apply", "emails", 0)], "created at minReplicas"
    await h.step()
    assert len(h.kube.of("apply")) == 1, "the cache has 5 s to show it before a re-apply"


async def test_a_burst_scales_up_in_one_step_and_reports_at_once():
    h = Harness(worker={"concurrency": 2}, scaling={"maxReplicas": 20})
    await h.ready(1)
    h.kube.calls.clear()
    await h.step(h.snapshot(backlog=30))
    assert h.kube.of("replicas") == [("replicas", 15)]
    (status,) = [c[1] for c in h.kube.of("status")]
    assert status["backlog"] == 30 and status["desiredReplicas"] == 15
    assert condition(status, "Scaling")["reason"] == "ScaledUp"
    assert ("Normal", "ScaledUp") in {e[:2] for e in h.events}


async def test_scale_down_marks_deletion_costs_before_lowering_replicas():
    h = Harness(scaling={"minReplicas": 0, "scaleDown": {"stabilizationWindowSeconds": 0}})
    await h.ready(3)
    h.pollers.poller.loads = {
        "busy": WorkerLoad(active=1, reserved=0, consuming=True, updated=h.clock.now)
    }
    h.kube.calls.clear()
    await h.step(h.snapshot(in_flight=1, busy=1))
    assert [c[0] for c in h.kube.calls[:2]] == ["costs", "replicas"]
    assert h.kube.of("replicas") == [("replicas", 1)], "the busy worker holds one replica"


async def test_counts_alone_are_written_at_most_every_status_interval():
    h = Harness()
    await h.ready(1)
    h.kube.calls.clear()
    await h.step(h.snapshot(backlog=1))
    await h.step(h.snapshot(backlog=2))
    assert h.kube.of("status") == [], "counts changed, but the 5 s interval is not over"
    await h.step(h.snapshot(backlog=2), seconds=5)
    assert [c[1]["backlog"] for c in h.kube.of("status")] == [2]


async def test_counts_held_back_by_the_interval_are_written_when_it_is_over():
    """Even when nothing changes after them: the poller hands over the same observation
    while the pool is quiet, and the loop skips such cycles. (Seen on a real node before
    the fix: a TaskQueue said inFlight 1 for good after its tasks had finished.)"""
    h = Harness()
    await h.ready(1)
    h.kube.calls.clear()
    await h.step(h.snapshot(in_flight=1, busy=1), seconds=5)
    quiet = h.snapshot()
    for _ in range(8):
        await h.step(quiet)
    assert [c[1]["inFlight"] for c in h.kube.of("status")] == [1, 0]


async def test_an_unreachable_api_server_is_retried_with_backoff_and_logged_once(caplog):
    caplog.set_level(logging.INFO, logger="stalk_operator")
    h = Harness(worker={"concurrency": 1}, scaling={"maxReplicas": 10})
    await h.ready(1)
    h.kube.calls.clear()
    h.kube.fail = [httpx2.ConnectError("connection refused") for _ in range(20)]
    for _ in range(30):
        await h.step(h.snapshot(backlog=5), seconds=0.5)
    assert h.kube.of("replicas") == []
    assert condition_reason(h) is None, "nothing could be written"
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "KubernetesUnreachable" in warnings[0].getMessage()
    attempts = 20 - len(h.kube.fail)
    assert 3 <= attempts <= 12, f"backed off (0.5 s up to 5 s), not every poll: {attempts}"
    h.kube.fail.clear()
    for _ in range(12):
        await h.step(h.snapshot(backlog=5), seconds=0.5)
    assert h.kube.of("replicas") == [("replicas", 5)], "scaled once the API server answered"
    assert any("recovered from KubernetesUnreachable" in r.getMessage() for r in caplog.records)


def condition_reason(h: Harness) -> str | None:
    statuses = [c[1] for c in h.kube.of("status")]
    return condition(statuses[-1], "Scaling")["reason"] if statuses else None


async def test_a_refused_write_shows_on_the_taskqueue_and_clears_when_it_succeeds():
    h = Harness()
    await h.ready(1)
    h.kube.fail = [answer(422, "Invalid", "bad")]
    await h.step(h.snapshot(backlog=10))
    shown = [c[1] for c in h.kube.of("status")][-1]
    assert condition(shown, "Scaling")["reason"] == "KubernetesRefused"
    assert ("Warning", "KubernetesRefused") in {e[:2] for e in h.events}
    await h.step(h.snapshot(backlog=10), seconds=1)
    assert h.kube.of("replicas")
    assert condition(h.kube.of("status")[-1][1], "Scaling")["reason"] == "ScaledUp"


async def test_an_api_server_that_stops_and_starts_is_one_fault_logged_once(caplog):
    """While it goes down and comes back, the API server refuses connections, answers
    503 or 500, and, until its RBAC caches have synced, 403: one outage, one warning, one
    Event-free fault (an Event could not be posted either), however the failures
    alternate."""
    h = Harness()
    await h.ready(1)
    h.kube.fail = [
        httpx2.ConnectError("All connection attempts failed"),
        answer(503),
        httpx2.ConnectError("All connection attempts failed"),
        answer(403),
        answer(500),
        answer(429),
        answer(403),
    ]
    caplog.set_level(logging.INFO, logger="stalk_operator.loop")
    for _ in range(7):
        await h.step(h.snapshot(backlog=10), seconds=6)
    assert not h.kube.fail, "every failure was met"
    await h.step(h.snapshot(backlog=10), seconds=6)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "KubernetesUnreachable" in warnings[0], warnings
    assert condition(h.kube.of("status")[-1][1], "Scaling")["reason"] != "KubernetesUnreachable"


async def test_a_refusal_that_outlasts_an_outage_is_a_fault_of_its_own(caplog):
    """A 403 moments after the API server came back is taken for it still starting; one
    that goes on is news: a warning, an Event and the reason on the TaskQueue."""
    h = Harness()
    await h.ready(1)
    forbidden = answer(403, "Forbidden", "no")
    h.kube.fail = [httpx2.ConnectError("All connection attempts failed")] + [forbidden] * 5
    caplog.set_level(logging.INFO, logger="stalk_operator.loop")
    for _ in range(6):
        await h.step(h.snapshot(backlog=10), seconds=6)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 2, warnings
    assert "KubernetesUnreachable" in warnings[0] and "KubernetesRefused" in warnings[1]
    assert ("Warning", "KubernetesRefused") in {e[:2] for e in h.events}


async def test_a_deployment_it_does_not_own_is_never_written():
    h = Harness()
    await h.step()
    h.deployment(2, owner=("Rollout", "someone-else", "uid-9"))
    for _ in range(3):
        await h.step(h.snapshot(backlog=50))
    assert h.kube.of("apply") == [] and h.kube.of("replicas") == []
    ready = condition(h.kube.of("status")[-1][1], "Ready")
    assert (ready["status"], ready["reason"]) == ("False", "DeploymentNotOwned")
    warned = [e for e in h.events if e[1] == "DeploymentNotOwned"]
    assert len(warned) == 1 and "Rollout someone-else" in warned[0][2], h.events
    h.loop.deployment = None  # its owner deleted it
    await h.step(h.snapshot(), seconds=6)
    assert h.kube.of("apply") == [("apply", "emails", 1)], "recovers by itself"


async def test_same_name_again_waits_for_the_old_deployment_then_takes_over():
    h = Harness()
    await h.step()
    h.deployment(1, owner=("TaskQueue", "emails", "uid-old"))
    await h.step(h.snapshot())
    ready = condition(h.kube.of("status")[-1][1], "Ready")
    assert ready["reason"] == "WaitingForOldDeployment"
    h.loop.deployment = None  # the garbage collector deleted it
    await h.step(h.snapshot())
    assert h.kube.of("apply") == [("apply", "emails", 1)]


async def test_a_missing_broker_secret_is_reported_and_retried():
    h = Harness(
        broker={
            "url": "redis://elsewhere:6379/0",
            "passwordSecretRef": {"name": "redis", "key": "password"},
        }
    )
    await h.step()
    assert h.pollers.subscribed == []
    shown = h.kube.of("status")[-1][1]
    reachable = condition(shown, "BrokerReachable")
    assert (reachable["status"], reachable["reason"]) == ("False", "SecretUnavailable")
    assert "ns/redis" in reachable["message"]
    h.kube.secrets[("redis", "password")] = "s3cret"
    await h.step(seconds=2)
    assert len(h.pollers.subscribed) == 1
    assert h.pollers.subscribed[0][0].password == "s3cret"


@pytest.mark.parametrize("broken", [KeyError("spec"), ZeroDivisionError()])
async def test_an_unexpected_error_never_ends_the_loop(broken, monkeypatch):
    h = Harness()
    await h.ready(1)
    calls = []

    def explode(*args, **kwargs):
        calls.append(1)
        if len(calls) == 1:
            raise broken
        return original(*args, **kwargs)

    original = h.loop.report.decided
    monkeypatch.setattr(h.loop.report, "decided", explode)
    await h.step(h.snapshot(backlog=8))
    assert h.kube.of("replicas") == []
    await h.step(h.snapshot(backlog=8), seconds=1)
    assert h.kube.of("replicas") == [("replicas", 4)], "the next cycle carried on"


async def test_skipped_steady_cycles_still_count_for_the_scale_down_window():
    """A pool steady for minutes skips its decisions; when the load drops, the scale-down
    still waits out the whole window from the last steady poll."""
    h = Harness(
        worker={"concurrency": 2},
        scaling={"minReplicas": 0, "scaleDown": {"stabilizationWindowSeconds": 60}},
    )
    await h.ready(3)
    busy = h.snapshot(backlog=6)
    for _ in range(120):
        await h.step(busy)
    h.kube.calls.clear()
    idle = h.snapshot(backlog=0)
    for _ in range(59):
        await h.step(idle)
    assert h.kube.of("replicas") == [], "held through the 60 s window"
    for _ in range(3):
        await h.step(idle)
    assert h.kube.of("replicas") == [("replicas", 0)]
