"""The local control plane starts from the cache quickly and stops without leftovers."""

from __future__ import annotations

import os
import time

import pytest
from stalk_devenv.controlplane import ControlPlane

pytestmark = pytest.mark.e2e


def test_start_and_clean_stop(local_cluster, tmp_path):
    started = time.monotonic()
    second = ControlPlane(tmp_path / "second", bin_dir=local_cluster.bin_dir, nodes=1).start()
    elapsed = time.monotonic() - started
    rss = second.memory_rss_bytes()
    pids = [p.pid for p in second.processes.values()]
    assert set(rss) == {
        "etcd",
        "kube-apiserver",
        "kube-controller-manager",
        "kube-scheduler",
        "kwok",
    }
    print(
        f"\ncontrol plane warm start: {elapsed:.1f}s; RSS MiB: "
        + ", ".join(f"{k}={v / 2**20:.0f}" for k, v in rss.items())
        + f"; total={sum(rss.values()) / 2**20:.0f}"
    )
    second.stop()
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
