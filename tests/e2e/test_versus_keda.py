"""KEDA itself beside Stalk: the short mode of the side-by-side benchmark (CI).

The full mode (four traces, three KEDA setups) is `make bench`; it writes
docs/bench/keda/report.md, which docs/scaling.md quotes.
"""

from __future__ import annotations

import re
from contextlib import ExitStack
from pathlib import Path

import pytest
from kube import require_built
from stalk_devenv.binaries import find_keda_binaries
from stalk_devenv.versus import contenders, traces
from stalk_devenv.versus.__main__ import write
from stalk_devenv.versus.run import run_trace, start

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]


@pytest.fixture(scope="module")
def keda_binaries() -> Path:
    require_built()
    return require_built(find_keda_binaries, "KEDA")


def test_keda_scales_its_pools_beside_stalk_and_the_report_says_so(
    keda_binaries: Path, require_redis: None, tmp_path: Path
) -> None:
    trace = traces.short()[0]
    with ExitStack() as stack:
        bench = start(stack, tmp_path / "work", print)
        result = run_trace(bench, trace)
    by_pool = {f.pool: f for f in result.figures}
    for setup in contenders.KEDA_SETUPS:
        keda = by_pool[setup.name]
        samples = [s for s in result.samples if s.pool == setup.name]
        # KEDA's HPA read the queue's length through the external metrics API ...
        assert any(s.hpa_metric for s in samples), f"{setup.name}: the HPA never read a metric"
        # ... and scaled the Deployment up from zero on the backlog, past one replica.
        assert keda.peak_replicas > 1, f"{setup.name}: replicas {[s.replicas for s in samples]}"
        assert keda.finished == len(trace.sends), f"{setup.name}: not every task finished"
    stalk = by_pool[contenders.STALK]
    assert stalk.finished == len(trace.sends)
    assert stalk.peak_replicas > 1
    # KEDA's defaults poll every 30 s: its first worker starts later than Stalk's.
    assert by_pool["keda-default"].first_consuming > stalk.first_consuming

    report = write([result], tmp_path / "report", "short")
    text = report.read_text()
    print(text)
    row = next(line for line in text.splitlines() if line.startswith("| queue wait p95 |"))
    cells = [c.strip() for c in row.strip("|").split("|")[1:]]
    measured = [by_pool[f.pool].wait_p95 for f in result.figures]
    assert [float(re.match(r"[\d.]+", c).group()) for c in cells] == [
        round(m, 1) for m in measured if m is not None
    ]
    plot = tmp_path / "report" / f"{trace.name}.png"
    assert plot.read_bytes().startswith(b"\x89PNG") and plot.stat().st_size > 10_000
