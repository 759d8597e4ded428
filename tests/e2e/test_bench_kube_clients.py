"""Why the operator uses lightkube: the same work with the official client, measured.

Each client runs in a fresh process (tests/kube_client_probe.py) and patches the status
of 1,000 TaskQueues, as the operator's loops do, 16 at a time (the official client is
synchronous, so it gets 16 threads). Prints import time, wall time and resident memory.

The official client is installed into a cache directory of its own, not the project's
virtualenv: where it is importable, kopf imports it too (for its owner-reference helpers),
which would add its weight to every operator the other tests measure.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from stalk_devenv.binaries import cache_root
from taskqueues import taskqueue

pytestmark = [pytest.mark.e2e, pytest.mark.bench]

PROBE = Path(__file__).parents[1] / "kube_client_probe.py"
COUNT = 1000
OFFICIAL = "kubernetes>=31,<37"  # 37 needs a python-dateutil that Celery does not accept


def official_client() -> Path:
    target = cache_root() / "bench" / "kubernetes-client"
    if not (target / "kubernetes").is_dir():
        subprocess.run(
            [sys.executable, "-m", "pip", "install", "-q", "--target", str(target), OFFICIAL],
            check=True,
        )
    return target


def test_lightkube_against_the_official_client(cluster, namespace, stalk_crds):
    items = [taskqueue(f"tq-{i:04d}", [f"q{i}"]) for i in range(COUNT)]
    for start in range(0, COUNT, 250):
        cluster.apply(items[start : start + 250], namespace=namespace)
    results = {}
    env = {**os.environ, "PYTHONPATH": str(official_client())}
    for client in ("lightkube", "kubernetes", "lightkube", "kubernetes"):
        probe = subprocess.run(
            [sys.executable, str(PROBE), client, str(cluster.kubeconfig), namespace],
            capture_output=True,
            text=True,
            check=True,
            env=env if client == "kubernetes" else None,
        )
        results[client] = json.loads(probe.stdout)  # the second, warm run of each counts
    print()
    for name, r in results.items():
        assert r["patched"] == COUNT
        print(
            f"{name:>10}: import {r['import_seconds'] * 1000:.0f} ms; {COUNT} status patches "
            f"in {r['seconds']:.1f}s; RSS {r['rss_mib']:.0f} MiB (+{r['rss_added_mib']:.0f})"
        )
    light, official = results["lightkube"], results["kubernetes"]
    print(
        f"official/lightkube: import x{official['import_seconds'] / light['import_seconds']:.1f},"
        f" RSS x{official['rss_mib'] / light['rss_mib']:.2f}"
    )
