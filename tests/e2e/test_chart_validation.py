"""Every rendering of the chart, validated against the schemas of a pinned Kubernetes
(v1.34.4, the local API server) by a server-side dry run with strict field validation:
built-in kinds against Kubernetes' own OpenAPI, TaskQueues against our CRD (CEL rules
included), and the monitoring objects against the Prometheus Operator's CRDs of a pinned
release. Nothing is created."""

from __future__ import annotations

import os
import subprocess

import pytest
from chart import CHART, KUBE_VERSION, RENDERINGS, ROOT, helm_binary

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def monitoring_crds(cluster) -> None:
    result = subprocess.run(
        ["bash", str(ROOT / "hack" / "monitoring-crds.sh")], capture_output=True, text=True
    )
    if result.returncode != 0:
        if os.environ.get("CI"):
            pytest.fail(f"Prometheus Operator CRDs unavailable in CI: {result.stderr}")
        pytest.skip(f"Prometheus Operator CRDs unavailable: {result.stderr.strip()}")
    directory = result.stdout.strip().splitlines()[-1]
    cluster.kubectl("apply", "--server-side", "-f", directory)
    cluster.wait_established(
        "crd/servicemonitors.monitoring.coreos.com", "crd/prometheusrules.monitoring.coreos.com"
    )


def test_ci_values_files_exist():
    assert {"everything-values", "minimal-values"} <= set(RENDERINGS), RENDERINGS


@pytest.mark.parametrize("rendering", RENDERINGS)
def test_rendering_is_valid_for_the_pinned_kubernetes(
    cluster, stalk_crds, monitoring_crds, namespace, rendering
):
    rendered = subprocess.run(
        [
            helm_binary(),
            "template",
            "stalk",
            str(CHART),
            f"--namespace={namespace}",
            f"--kube-version={KUBE_VERSION}",
            *RENDERINGS[rendering],
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    # Every object names its namespace; the namespaced mode's Roles go to the watched
    # namespaces, which a dry run needs to exist.
    for extra in ("team-a", "team-b"):
        cluster.kubectl("create", "namespace", extra, check=False)
    result = cluster.kubectl(
        "apply",
        "--dry-run=server",
        "--validate=strict",
        "-f",
        "-",
        input_text=rendered,
        check=False,
    )
    assert result.returncode == 0, f"{rendering}: {result.stderr}"
    kinds = {line.split("/")[0] for line in result.stdout.split()}
    if rendering == "everything-values":
        for kind in (
            "servicemonitor.monitoring.coreos.com",
            "prometheusrule.monitoring.coreos.com",
        ):
            assert any(line.startswith(kind) for line in result.stdout.splitlines()), (
                f"{kind} missing from the everything rendering: {sorted(kinds)}"
            )
        assert "taskqueue.stalk.dev" in result.stdout
