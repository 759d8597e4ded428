"""Rendering the Helm chart with the real helm binary, for the tests that read it."""

from __future__ import annotations

import subprocess
from pathlib import Path

import yaml
from kube import require_binaries

ROOT = Path(__file__).parents[1]
CHART = ROOT / "charts" / "stalk"
KUBE_VERSION = "1.34.4"
MONITORING_API = ("--api-versions", "monitoring.coreos.com/v1")

RENDERINGS: dict[str, tuple[str, ...]] = {
    "defaults": (),
    "defaults-with-monitoring": MONITORING_API,
    **{
        values.stem: ("-f", str(values), *MONITORING_API)
        for values in sorted((CHART / "ci").glob("*-values.yaml"))
    },
}
"""Every rendering the tests check: the defaults, and each ``ci/*-values.yaml`` (the
Helm convention for values files a chart's CI installs) with the monitoring API on."""


def helm_binary() -> str:
    """The pinned helm, built with the Kubernetes binaries."""
    return str(require_binaries() / "helm")


def render(helm: str, *args: str, namespace: str = "stalk") -> list[dict]:
    """``helm template`` of the chart as parsed objects."""
    result = subprocess.run(
        [
            helm,
            "template",
            "stalk",
            str(CHART),
            "--namespace",
            namespace,
            "--kube-version",
            KUBE_VERSION,
            *args,
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def find(docs: list[dict], kind: str, name_suffix: str = "") -> dict:
    """The one rendered object of ``kind`` whose name ends with ``name_suffix``."""
    matches = [d for d in docs if d["kind"] == kind and d["metadata"]["name"].endswith(name_suffix)]
    assert len(matches) == 1, f"{len(matches)} {kind} objects named *{name_suffix}"
    return matches[0]
