"""The side-by-side benchmark's arithmetic: each figure from hand-made records."""

from __future__ import annotations

from stalk_devenv.versus import traces
from stalk_devenv.versus.figures import (
    in_flight,
    integral,
    oldest_wait,
    percentile,
    pool_figures,
)
from stalk_devenv.versus.recorder import Sample, TaskRecord, pool_of
from stalk_devenv.versus.report import TraceResult, compared, markdown


def sample(at: float, pool: str = "p", replicas: int = 0, pods: int = 0) -> Sample:
    return Sample(at=at, pool=pool, backlog=0, replicas=replicas, pods=pods)


def test_percentiles_are_measured_values() -> None:
    assert percentile([5.0, 1.0, 3.0, 2.0, 4.0], 0.5) == 3.0
    assert percentile([float(i) for i in range(1, 101)], 0.95) == 95.0
    assert percentile([], 0.5) is None


def test_worker_seconds_hold_each_sample_until_the_next_and_clip_to_the_window() -> None:
    series = [sample(0, pods=0), sample(10, pods=2), sample(20, pods=1), sample(30, pods=0)]
    assert integral(series, start=0, end=40) == 2 * 10 + 1 * 10
    assert integral(series, start=15, end=25) == 2 * 5 + 1 * 5


def test_a_task_started_twice_counts_as_interrupted_and_its_wait_is_to_the_first_start() -> None:
    tasks = [
        TaskRecord(
            "p",
            sent=100.0,
            seconds=1,
            priority=None,
            starts=[(103.0, "a"), (140.0, "b")],
            finished=141.0,
        ),
        TaskRecord(
            "p", sent=100.0, seconds=1, priority=None, starts=[(101.0, "a")], finished=102.0
        ),
        TaskRecord("other", sent=100.0, seconds=1, priority=None, starts=[(200.0, "c")]),
    ]
    samples = [sample(99, replicas=0), sample(100.5, replicas=1, pods=1), sample(142, pods=0)]
    figures = pool_figures("p", tasks, samples, start=100.0, end=150.0, killed_pods=1)
    assert figures.tasks == 2 and figures.finished == 2
    assert figures.interrupted_tasks == 1
    assert figures.wait_max == 3.0 and figures.first_consuming == 1.0
    assert figures.killed_pods == 1
    assert figures.scale_events == 2 and figures.peak_replicas == 1  # 0 -> 1 -> 0


def test_tasks_waiting_while_the_pool_was_at_zero() -> None:
    waited = TaskRecord("p", sent=10.0, seconds=1, priority=None, starts=[(25.0, "a")])
    served = TaskRecord("p", sent=30.0, seconds=1, priority=None, starts=[(30.5, "a")])
    samples = [sample(9, replicas=0), sample(12, replicas=0), sample(20, replicas=1)]
    figures = pool_figures("p", [waited, served], samples, start=10.0, end=40.0)
    assert figures.waited_at_zero == 1
    assert figures.longest_wait_at_zero == 10.0  # sent at 10, replicas 1 from 20


def test_in_flight_counts_the_last_delivery_until_it_finished() -> None:
    task = TaskRecord(
        "p", sent=0, seconds=5, priority=None, starts=[(1.0, "a"), (10.0, "b")], finished=15.0
    )
    assert in_flight([task], "p", [2.0, 10.0, 14.9, 15.0]) == [0, 1, 1, 0]


def test_a_worker_belongs_to_the_pool_its_pod_is_named_after() -> None:
    pools = ["keda", "keda-tuned", "stalk"]
    assert pool_of("keda-tuned-5d8f-abcde@versus-burst", pools) == "keda-tuned"
    assert pool_of("keda-5d8f-abcde@ns", pools) == "keda"
    assert pool_of("flower-1@ns", pools) is None


def test_traces_are_the_same_on_every_run() -> None:
    assert traces.full() == traces.full()
    day = next(t for t in traces.full() if t.name == "day")
    middle = [s for s in day.sends if 60 <= s.at < 120]
    edges = [s for s in day.sends if s.at < 30 or s.at >= 150]
    assert len(middle) > 3 * len(edges)  # the rate rises and falls
    assert {s.priority for s in traces.full()[-1].sends} == set(range(10))


def two_pools(keda_replicas_at_end: int) -> TraceResult:
    """Stalk: a task waits 1 s, two pods for 10 s. KEDA: it waits 4 s, one pod, and it
    ends the run at ``keda_replicas_at_end`` replicas."""
    trace = traces.burst(count=1, seconds=1, tail=0)
    tasks, samples = [], []
    for pool, wait, pods, at_end in (("stalk", 1.0, 2, 0), ("keda", 4.0, 1, keda_replicas_at_end)):
        tasks.append(
            TaskRecord(
                pool, sent=0, seconds=1, priority=None, starts=[(wait, "w")], finished=wait + 1
            )
        )
        samples += [
            sample(0, pool, replicas=1, pods=pods),
            sample(10, pool, replicas=at_end, pods=at_end),
        ]
    return TraceResult(
        trace,
        tuple(pool_figures(p, tasks, samples, 0, 10) for p in ("stalk", "keda")),
        tuple(samples),
        tuple(tasks),
        0,
        10,
    )


def test_the_report_says_where_keda_did_better_and_where_the_same() -> None:
    result = two_pools(keda_replicas_at_end=0)
    better, same = compared(result, "stalk")
    assert better == ["keda: worker-seconds 10.0 (0.50x)"]
    assert "keda tasks finished" in same
    # Counts that say what happened, or that no pool can score, are no contest.
    assert not any("interrupted" in line or "scale events" in line for line in better + same)
    assert not any("queue wait" in line for line in better + same)
    text = markdown([result], "stalk", "# report", {"burst": "burst.png"})
    assert "| queue wait p50 | 1.0 s | 4.0 s (4.00x) |" in text
    # Neither waited at 0 replicas longer than one sample: that is all a sample can say.
    assert "| longest wait at 0 replicas | ≤ 0.5 s | ≤ 0.5 s |" in text
    assert "| tasks interrupted (delivered again) | 0 | 0 |" in text


def test_the_cost_of_a_pool_still_running_at_the_end_is_compared_with_nothing() -> None:
    """KEDA's defaults hold replicas for 300 s after the last task: cut off by the end of
    the run, its worker-seconds are a floor, not a figure that can win."""
    result = two_pools(keda_replicas_at_end=1)
    better, same = compared(result, "stalk")
    assert not any("worker-seconds" in line for line in better + same)
    text = markdown([result], "stalk", "# report", {"burst": "burst.png"})
    assert "| worker-seconds | 20.0 | 10.0+ |" in text


def test_the_oldest_wait_is_the_age_of_the_earliest_task_not_yet_started():
    tasks = [
        TaskRecord("p", sent=10.0, seconds=1, priority=None, starts=[(14.0, "a")]),
        TaskRecord("p", sent=12.0, seconds=1, priority=None, starts=[(20.0, "a")]),
    ]
    assert oldest_wait(tasks, "p", [9.0, 13.0, 16.0, 21.0]) == [0.0, 3.0, 4.0, 0.0]


def test_a_task_never_started_waits_until_the_end_of_the_run_and_is_not_finished() -> None:
    """KEDA blind to a priority list, at zero replicas: the task is stranded. Leaving it
    out of the waits would flatter the pool that stranded it."""
    tasks = [
        TaskRecord("p", sent=0.0, seconds=1, priority=None, starts=[(1.0, "w")], finished=2.0),
        TaskRecord("p", sent=0.0, seconds=1, priority=9),
    ]
    figures = pool_figures("p", tasks, [sample(0, "p")], 0, 600)
    assert figures.wait_max == 600.0
    assert figures.finished == 1 and figures.tasks == 2
