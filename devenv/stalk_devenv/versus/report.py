"""The side-by-side as a markdown report and one PNG per trace, from a run's figures."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from stalk_devenv.versus.figures import PoolFigures, in_flight, oldest_wait
from stalk_devenv.versus.recorder import SAMPLE_SECONDS, Sample, TaskRecord
from stalk_devenv.versus.traces import Trace


@dataclass(frozen=True)
class TraceResult:
    trace: Trace
    figures: tuple[PoolFigures, ...]
    samples: tuple[Sample, ...]
    tasks: tuple[TaskRecord, ...]
    start: float
    end: float


@dataclass(frozen=True)
class Row:
    label: str
    value: Callable[[PoolFigures], float | int | None]
    unit: str = ""
    lower_is_better: bool = True
    ratio: bool = False
    compared: bool = True
    """Whether a difference says one system did better: not for counts that only say
    what happened (scale events, peak replicas), nor for what no pool can score here."""
    runs_on: bool = False
    """The figure goes on growing while the pool still holds replicas at the end of the
    run (marked ``+``, compared with nothing)."""
    resolution: float = 0.0
    """Below this the figure is one sample or less: shown as ``≤``, and equal."""


MIN_RATIO_BASE = 0.5

ROWS = (
    Row("queue wait p50", lambda f: f.wait_p50, "s", ratio=True),
    Row("queue wait p95", lambda f: f.wait_p95, "s", ratio=True),
    Row("queue wait max", lambda f: f.wait_max, "s", ratio=True),
    Row("first added worker consuming", lambda f: f.first_consuming, "s", ratio=True),
    Row("worker-seconds", lambda f: f.worker_seconds, "", ratio=True, runs_on=True),
    # Every pool's Deployment waits out its tasks on scale-down (see the header): these
    # show that it did, and are no contest.
    Row("tasks interrupted (delivered again)", lambda f: f.interrupted_tasks, compared=False),
    Row("worker pods killed mid-task", lambda f: f.killed_pods, compared=False),
    Row("tasks that waited over 1 s at 0 replicas", lambda f: f.waited_at_zero),
    Row(
        "longest wait at 0 replicas",
        lambda f: f.longest_wait_at_zero,
        "s",
        resolution=SAMPLE_SECONDS,
    ),
    Row("scale events", lambda f: f.scale_events, compared=False),
    Row("peak replicas", lambda f: f.peak_replicas, compared=False),
    Row("replicas at the end", lambda f: f.replicas_at_end, compared=False),
    Row("tasks finished", lambda f: f.finished, lower_is_better=False),
)


def _running_on(row: Row, figures: PoolFigures) -> bool:
    return row.runs_on and figures.replicas_at_end > 0


def _cell(row: Row, figures: PoolFigures, baseline: PoolFigures) -> str:
    value = row.value(figures)
    if value is None:
        return "-"
    if row.resolution and value <= row.resolution:
        return f"≤ {row.resolution:g} {row.unit}".strip()
    text = f"{value:.1f} {row.unit}".strip() if isinstance(value, float) else str(value)
    if _running_on(row, figures):
        return text + "+"
    base = row.value(baseline)
    # No ratio against a baseline that rounds to nothing: 0.05 s against 30 s says less
    # than the two figures do.
    if (
        row.ratio
        and figures is not baseline
        and base is not None
        and base >= MIN_RATIO_BASE
        and not _running_on(row, baseline)
    ):
        text += f" ({value / base:.2f}x)"
    return text


def compared(result: TraceResult, baseline: str) -> tuple[list[str], list[str]]:
    """Where a KEDA setup did better than Stalk, and where it did the same, said plainly."""
    stalk = next(f for f in result.figures if f.pool == baseline)
    better, same = [], []
    for figures in result.figures:
        if figures.pool == baseline:
            continue
        for row in (r for r in ROWS if r.compared):
            mine, theirs = row.value(figures), row.value(stalk)
            if mine is None or theirs is None:
                continue
            if _running_on(row, figures) or _running_on(row, stalk):
                continue
            if (
                mine == theirs
                or (isinstance(mine, float) and abs(mine - theirs) < 0.05)
                or (row.resolution and max(mine, theirs) <= row.resolution)
            ):
                same.append(f"{figures.pool} {row.label}")
            elif (mine < theirs) if row.lower_is_better else (mine > theirs):
                better.append(f"{figures.pool}: {row.label} {_cell(row, figures, stalk)}")
    return better, same


def markdown(
    results: Sequence[TraceResult],
    baseline: str,
    header: str,
    plots: Mapping[str, str],
) -> str:
    lines = [header.rstrip(), ""]
    for result in results:
        pools = [f.pool for f in result.figures]
        lines += [f"## {result.trace.title}", ""]
        lines.append("| | " + " | ".join(pools) + " |")
        lines.append("| --- |" + " --- |" * len(pools))
        stalk = next(f for f in result.figures if f.pool == baseline)
        for row in ROWS:
            cells = [_cell(row, f, stalk) for f in result.figures]
            lines.append(f"| {row.label} | " + " | ".join(cells) + " |")
        lines.append("")
        if result.trace.note:
            lines += [result.trace.note, ""]
        better, same = compared(result, baseline)
        lines.append("Where KEDA did better than Stalk: " + ("; ".join(better) or "nowhere") + ".")
        lines.append("")
        lines.append("Where it did the same: " + ("; ".join(same) or "nowhere") + ".")
        lines += ["", f"![{result.trace.name}]({plots[result.trace.name]})", ""]
    return "\n".join(lines)


def plot(result: TraceResult, path: Path) -> Path:
    """Backlog, the oldest task's wait, in-flight and replicas over time, every pool on
    the same axes."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pools = [f.pool for f in result.figures]
    figure, axes = plt.subplots(4, 1, sharex=True, figsize=(10, 10))
    for pool in pools:
        series = sorted((s for s in result.samples if s.pool == pool), key=lambda s: s.at)
        times = [s.at - result.start for s in series]
        style = {"linewidth": 2.2 if pool == pools[0] else 1.4, "label": pool}
        at = [s.at for s in series]
        axes[0].step(times, [s.backlog for s in series], where="post", **style)
        axes[1].plot(times, oldest_wait(result.tasks, pool, at), **style)
        axes[2].step(times, in_flight(result.tasks, pool, at), where="post", **style)
        axes[3].step(times, [s.replicas for s in series], where="post", **style)
    labels = ("backlog (tasks)", "oldest wait (s)", "in flight (tasks)", "replicas")
    for axis, label in zip(axes, labels, strict=True):
        axis.set_ylabel(label)
        axis.grid(alpha=0.3)
    axes[0].legend(loc="upper right", fontsize="small")
    axes[-1].set_xlabel("seconds since the trace began")
    figure.suptitle(result.trace.title)
    figure.tight_layout()
    figure.savefig(path, dpi=90)
    plt.close(figure)
    return path
