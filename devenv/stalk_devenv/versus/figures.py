"""The figures of one pool over one trace, from what the recorder kept. Pure.

* **wait**: from the send to the first ``task-started`` (the worker's clock; producer
  and workers share this machine's); a task never started counts as waiting until the
  end of the run, at least (left out, it would flatter the pool that stranded it).
* **first worker consuming**: from the pool's first send to its first ``task-started``
  (every pool starts at zero replicas, so that worker was added for the trace).
* **worker-seconds**: the time integral of the pool's pods, over the same window for
  every pool (first send to the end of the run), terminating pods included: a pod
  costs until it is gone.
* **interrupted**: tasks started more than once (their worker was stopped under them
  and the message delivered again), and pods whose worker exited non-zero.
* **waited at zero**: tasks that waited more than :data:`AT_ZERO_GRACE_SECONDS` while
  the autoscaler asked for zero replicas (a task sent to an idle pool waits at zero
  until the next poll sees it), and the longest time one task waited so.
* **scale events**: changes of the Deployment's ``spec.replicas``.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from stalk_devenv.versus.recorder import Sample, TaskRecord

AT_ZERO_GRACE_SECONDS = 1.0
"""One poll of either autoscaler at its quickest, and two samples."""


@dataclass(frozen=True)
class PoolFigures:
    pool: str
    tasks: int
    finished: int
    wait_p50: float | None
    wait_p95: float | None
    wait_max: float | None
    first_consuming: float | None
    worker_seconds: float
    interrupted_tasks: int
    killed_pods: int
    waited_at_zero: int
    longest_wait_at_zero: float
    scale_events: int
    peak_replicas: int
    replicas_at_end: int


def percentile(values: Sequence[float], fraction: float) -> float | None:
    """Nearest-rank percentile: a value that was measured, never an interpolation."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(fraction * len(ordered)))
    return ordered[rank - 1]


def pool_figures(
    pool: str,
    tasks: Iterable[TaskRecord],
    samples: Sequence[Sample],
    start: float,
    end: float,
    killed_pods: int = 0,
) -> PoolFigures:
    mine = [t for t in tasks if t.pool == pool]
    series = sorted((s for s in samples if s.pool == pool), key=lambda s: s.at)
    waits = [min(at for at, _ in t.starts) - t.sent if t.starts else end - t.sent for t in mine]
    first_starts = [min(at for at, _ in t.starts) for t in mine if t.starts]
    replicas = [s.replicas for s in series]
    return PoolFigures(
        pool=pool,
        tasks=len(mine),
        finished=sum(1 for t in mine if t.finished is not None),
        wait_p50=percentile(waits, 0.50),
        wait_p95=percentile(waits, 0.95),
        wait_max=max(waits) if waits else None,
        first_consuming=((min(first_starts) - min(t.sent for t in mine)) if first_starts else None),
        worker_seconds=integral(series, start, end),
        interrupted_tasks=sum(1 for t in mine if len(t.starts) > 1),
        killed_pods=killed_pods,
        waited_at_zero=sum(
            1 for t in mine if _time_at_zero(t, series, end) > AT_ZERO_GRACE_SECONDS
        ),
        longest_wait_at_zero=max((_time_at_zero(t, series, end) for t in mine), default=0.0),
        scale_events=sum(1 for a, b in itertools.pairwise(replicas) if a != b),
        peak_replicas=max(replicas, default=0),
        replicas_at_end=replicas[-1] if replicas else 0,
    )


def integral(series: Sequence[Sample], start: float, end: float) -> float:
    """Pod-seconds between ``start`` and ``end``, each sample's count held until the next."""
    total = 0.0
    for here, following in zip(series, [*series[1:], None], strict=True):
        left = max(here.at, start)
        right = min(following.at if following is not None else end, end)
        if right > left:
            total += here.pods * (right - left)
    return total


def _time_at_zero(task: TaskRecord, series: Sequence[Sample], end: float) -> float:
    """How long ``task`` waited while the pool's replicas were 0 (each sample's value
    held until the next)."""
    started = min((at for at, _ in task.starts), default=end)
    total = 0.0
    for here, following in zip(series, [*series[1:], None], strict=True):
        if here.replicas != 0:
            continue
        left = max(here.at, task.sent)
        right = min(following.at if following is not None else end, started)
        total += max(0.0, right - left)
    return total


def in_flight(tasks: Iterable[TaskRecord], pool: str, times: Sequence[float]) -> list[int]:
    """Tasks running at each of ``times``: started (last delivery) and not finished."""
    spans = [
        (max(at for at, _ in t.starts), t.finished if t.finished is not None else math.inf)
        for t in tasks
        if t.pool == pool and t.starts
    ]
    return [sum(1 for begin, finish in spans if begin <= at < finish) for at in times]


def oldest_wait(tasks: Iterable[TaskRecord], pool: str, times: Sequence[float]) -> list[float]:
    """How long the oldest waiting task had waited at each of ``times`` (0 when none
    waited): the true figure, from send and first start, that Stalk's status estimates."""
    spans = sorted(
        (t.sent, min((at for at, _ in t.starts), default=math.inf)) for t in tasks if t.pool == pool
    )
    waits = []
    for at in times:
        waiting = [sent for sent, started in spans if sent <= at < started]
        waits.append(at - min(waiting) if waiting else 0.0)
    return waits
