"""The README's main job, end to end: `python -m stalk_devenv demo` (what `make demo`
runs) installs the chart with helm, runs `helm test`, scales real workers under a burst
and back, and reports every task done, in both of its modes."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from kube import require_binaries
from stalk_devenv.controlplane import REPO_ROOT

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]


def run_demo(mode: str) -> str:
    bin_dir = require_binaries()
    result = subprocess.run(
        [sys.executable, "-m", "stalk_devenv", "demo", f"--mode={mode}"],
        env={
            **os.environ,
            "STALK_K8S_BIN_DIR": str(bin_dir),
            "PYTHONPATH": "devenv",
            # The examples wait up to 120 s before scaling down; the test needs only to
            # see that they do.
            "STALK_DEMO_SCALE_DOWN_WINDOW_SECONDS": "15",
        },
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=840,
    )
    out = result.stdout
    assert result.returncode == 0, out[-3000:] + result.stderr[-3000:]
    assert f"mode: {mode}" in out
    assert "helm test passed" in out
    sent, succeeded, failed = map(
        int, re.search(r"tasks: (\d+) sent, (\d+) succeeded, (\d+) failed", out).groups()
    )
    assert sent == succeeded > 0 and failed == 0
    audit = re.search(r"passwords in logs, TaskQueue statuses and Events: (.*) \((\d+) log", out)
    assert audit and audit.group(1) == "none", out[-2000:]
    assert int(audit.group(2)) >= 4, "the operator's, Flower's, beat's and workers' logs"
    for pool, floor in (("emails", 1), ("files", 0), ("batch", 0)):
        peak = int(re.search(rf"{pool}: scaled up .* peak (\d+) replicas", out).group(1))
        assert peak > max(floor, 1), f"{pool} did not scale up: {out[-2000:]}"
        assert f"back to {floor} at the end" in out.split(f"{pool}: scaled up", 1)[1].split("\n")[0]
    picture = Path(re.search(r"the run as a picture: (\S+)", out).group(1))
    assert picture.read_bytes().startswith(b"\x89PNG") and picture.stat().st_size > 20_000
    return out


def test_the_main_job_runs_to_a_clean_summary_with_processes():
    out = run_demo("processes")
    assert "worker pods killed mid-task: 0" in out


@pytest.mark.realnode
def test_the_main_job_runs_to_a_clean_summary_in_real_containers(real_node_possible):
    out = run_demo("containers")
    assert "container restarts: 0" in out
