"""The scaling decision, case by case and by property."""

from __future__ import annotations

from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from stalk_operator.scaling import History, Load, Reason, decide
from stalk_operator.scaling.decision import recommend
from taskqueues import policy

POLICY = policy(
    min_replicas=0,
    max_replicas=20,
    target_per_replica=2,
    down_window_seconds=60,
    down_step_interval_seconds=0,
)


def load(backlog: int = 0, in_flight: int = 0, busy: int = 0) -> Load:
    return Load(backlog=backlog, in_flight=in_flight, busy_workers=busy)


@pytest.mark.parametrize(
    ("observed", "expected"),
    [
        (load(0), 0),
        (load(1), 1),
        (load(4), 2),
        (load(5), 3),
        (load(2, 3), 3),  # in-flight counts as much as waiting work
        (load(0, 6, 3), 3),  # an empty list with busy workers is not an idle pool
        (load(1000), 20),  # clamped to max
        (load(0, 0, 25), 20),
    ],
)
def test_recommendation(observed, expected):
    assert recommend(observed, POLICY) == expected


def test_activation_threshold_keeps_zero_until_exceeded():
    policy = replace(POLICY, activation_backlog=5)
    assert recommend(load(5), policy) == 0
    assert recommend(load(6), policy) == 3
    assert recommend(load(0, 0, 1), policy) == 1, "busy workers count even below activation"


def test_min_replicas_floor():
    assert recommend(load(0), replace(POLICY, min_replicas=2)) == 2


def test_scale_up_is_immediate_and_in_one_step():
    decision = decide(load(30), current=1, policy=POLICY, history=History(), now=0)
    assert (decision.replicas, decision.reason) == (15, Reason.SCALED_UP)


def test_scale_up_step_limit_and_window():
    limited = decide(load(30), 1, replace(POLICY, up_max_step=4), History(), now=0)
    assert limited.replicas == 5
    windowed = replace(POLICY, up_window_seconds=10)
    first = decide(load(2), 1, windowed, History(), now=0)
    spike = decide(load(30), 1, windowed, first.history, now=5)
    assert (spike.replicas, spike.reason) == (1, Reason.STABILIZING), "a spike must persist"
    later = decide(load(30), 1, windowed, spike.history, now=11)
    assert later.replicas == 15


def test_scale_down_waits_for_the_window():
    history = decide(load(20), 10, POLICY, History(), now=0).history
    early = decide(load(0), 10, POLICY, history, now=30)
    assert (early.replicas, early.reason) == (10, Reason.STABILIZING)
    late = decide(load(0), 10, POLICY, early.history, now=61)
    assert (late.replicas, late.reason) == (0, Reason.SCALED_DOWN)


def test_scale_down_uses_the_highest_recommendation_in_the_window():
    h = decide(load(20), 10, POLICY, History(), now=0).history
    h = decide(load(8), 10, POLICY, h, now=30).history  # recommends 4
    d = decide(load(2), 10, POLICY, h, now=61)  # window holds 4 and 1
    assert d.replicas == 4


def test_scale_down_step_limit_and_interval():
    policy = replace(POLICY, down_window_seconds=0, down_max_step=2, down_step_interval_seconds=15)
    first = decide(load(0), 10, policy, History(), now=0)
    assert first.replicas == 8
    too_soon = decide(load(0), 8, policy, first.history, now=10)
    assert (too_soon.replicas, too_soon.reason) == (8, Reason.STEP_INTERVAL)
    assert decide(load(0), 8, policy, too_soon.history, now=16).replicas == 6


def test_busy_workers_hold_replicas():
    policy = replace(POLICY, down_window_seconds=0)
    decision = decide(load(0, 4, 4), 4, policy, History(), now=0)
    assert (decision.replicas, decision.reason) == (4, Reason.BUSY_WORKERS)
    partly = decide(load(0, 2, 2), 5, policy, History(), now=0)
    assert partly.replicas == 2, "only the idle workers go"


def test_never_to_zero_while_tasks_run():
    policy = replace(POLICY, down_window_seconds=0)
    decision = decide(load(0, 1, 1), 3, policy, History(), now=0)
    assert decision.replicas == 1


def test_paused_and_broker_unreachable():
    assert decide(load(100), 3, replace(POLICY, paused=True), History(), 0).replicas == 3
    held = decide(None, 3, POLICY, History(), 0)
    assert (held.replicas, held.reason) == (3, Reason.BROKER_UNREACHABLE)
    fallback = decide(None, 3, replace(POLICY, fallback_replicas=5), History(), 0)
    assert (fallback.replicas, fallback.reason) == (5, Reason.FALLBACK)


def test_out_of_bounds_is_corrected_at_once():
    policy = replace(POLICY, min_replicas=2, max_replicas=4)
    assert decide(load(0), 0, policy, History(), 0).replicas == 2
    assert decide(load(0), 9, policy, History(), 0).replicas == 4


def test_restart_history_prevents_an_immediate_scale_down():
    history = History.after_restart(now=100, current=6, last_scale_time=None)
    decision = decide(load(0), 6, POLICY, history, now=101)
    assert decision.replicas == 6
    assert decide(load(0), 6, POLICY, decision.history, now=161).replicas == 0


policies = st.builds(
    policy,
    min_replicas=st.integers(0, 5),
    max_replicas=st.integers(5, 50),
    target_per_replica=st.integers(1, 10),
    activation_backlog=st.integers(0, 5),
    up_window_seconds=st.sampled_from([0, 0, 5]),
    up_max_step=st.none() | st.integers(1, 4),
    down_window_seconds=st.sampled_from([0, 10, 60]),
    down_max_step=st.none() | st.integers(1, 4),
    down_step_interval_seconds=st.sampled_from([0, 15]),
)
loads = st.builds(
    Load,
    backlog=st.integers(0, 500),
    in_flight=st.integers(0, 100),
    busy_workers=st.integers(0, 60),
)


@settings(max_examples=300, deadline=None)
@given(
    policy=policies,
    steps=st.lists(st.tuples(loads, st.integers(1, 30)), min_size=1, max_size=20),
    start=st.integers(0, 60),
)
def test_properties_over_a_sequence_of_polls(policy, steps, start):
    current, history, now = (
        min(max(start, policy.min_replicas), policy.max_replicas),
        History(),
        0.0,
    )
    for observed, gap in steps:
        now += gap
        decision = decide(observed, current, policy, history, now)
        assert policy.min_replicas <= decision.replicas <= policy.max_replicas
        if decision.replicas < current:
            assert decision.replicas >= min(observed.busy_workers, policy.max_replicas), (
                "a scale-down never removes busy workers"
            )
            assert decision.recommended is not None
            assert decision.replicas >= decision.recommended
            if policy.down_max_step is not None:
                assert current - decision.replicas <= policy.down_max_step
        if decision.replicas > current and policy.up_max_step is not None:
            assert decision.replicas - current <= policy.up_max_step
        if (
            policy.up_window_seconds == 0
            and policy.up_max_step is None
            and decision.recommended is not None
            and decision.recommended > current
        ):
            assert decision.replicas == decision.recommended, "scale-up happens in one step"
        current, history = decision.replicas, decision.history


# -- a wait target (spec.scaling.targetWaitSeconds) --------------------------------------

WAIT_POLICY = replace(POLICY, target_per_replica=20, concurrency=2, target_wait_seconds=30.0)


def test_long_tasks_at_moderate_depth_get_the_replicas_the_wait_target_needs():
    """20 one-minute tasks, 20 tasks a replica by depth: one replica would start the
    last of them 10 minutes late. Within 30 s a replica starts 2 + 2 * 30/60 = 3."""
    waiting = Load(backlog=20, in_flight=0, busy_workers=0, task_seconds=60.0)
    assert recommend(waiting, replace(WAIT_POLICY, target_wait_seconds=None)) == 1
    assert recommend(waiting, WAIT_POLICY) == 7


def test_short_tasks_are_left_to_the_depth_target():
    quick = Load(backlog=20, in_flight=0, busy_workers=0, task_seconds=0.1)
    assert recommend(quick, WAIT_POLICY) == 1  # 2 * (1 + 300) tasks a replica within 30 s


def test_a_wait_already_over_the_target_scales_the_busy_workers_by_how_late_it_is():
    late = Load(backlog=10, in_flight=6, busy_workers=3, oldest_wait=60.0)
    assert recommend(late, WAIT_POLICY) == 6  # no run time known: 3 busy x 60/30
    on_time = replace(late, oldest_wait=20.0)
    assert recommend(on_time, WAIT_POLICY) == 3  # depth asks 1 (16 / 20); busy hold 3


def test_an_empty_queue_asks_nothing_of_the_wait_target():
    idle = Load(backlog=0, in_flight=4, busy_workers=2, oldest_wait=0.0, task_seconds=60.0)
    assert recommend(idle, WAIT_POLICY) == recommend(
        idle, replace(WAIT_POLICY, target_wait_seconds=None)
    )


@settings(max_examples=300, deadline=None)
@given(
    backlog=st.integers(0, 500),
    in_flight=st.integers(0, 50),
    busy=st.integers(0, 20),
    wait=st.floats(0, 3600),
    task_seconds=st.one_of(st.none(), st.floats(0.01, 3600)),
    target=st.floats(1, 3600),
)
def test_a_wait_target_only_ever_adds_replicas(
    backlog, in_flight, busy, wait, task_seconds, target
):
    observed = Load(backlog, in_flight, min(busy, 20), oldest_wait=wait, task_seconds=task_seconds)
    with_target = replace(WAIT_POLICY, target_wait_seconds=target)
    without = replace(WAIT_POLICY, target_wait_seconds=None)
    assert recommend(observed, with_target) >= recommend(observed, without)
    assert recommend(observed, with_target) <= WAIT_POLICY.max_replicas
