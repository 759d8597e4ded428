"""The chart as platform teams scan it: checkov's Kubernetes checks on every ``ci/*.yaml``
rendering and on the kustomize manifests. Every finding is either fixed or accepted with
its reason in ``charts/stalk/policy-exceptions.yaml``; an accepted finding that no longer
occurs is removed from there (the file stays exactly what is true)."""

from __future__ import annotations

import fnmatch
import json
import os
import subprocess
from collections import Counter
from pathlib import Path

import pytest
import yaml
from chart import CHART, KUBE_VERSION, MONITORING_API, ROOT, helm_binary

EXCEPTIONS = CHART / "policy-exceptions.yaml"


def checkov() -> str:
    cache = Path(
        os.environ.get("STALK_CACHE_DIR")
        or Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "stalk"
    )
    found = sorted((cache / "tools").glob("checkov-*/.complete"))
    if not found:
        if os.environ.get("CI"):
            pytest.fail("hack/setup.sh installs checkov (hack/checkov.sh); it is missing")
        pytest.skip("needs checkov: run hack/checkov.sh (hack/setup.sh does)")
    return str(found[-1].parent / "bin" / "checkov")


def renderings(directory: Path) -> list[Path]:
    helm = helm_binary()
    written = []
    for values in sorted((CHART / "ci").glob("*-values.yaml")):
        rendered = subprocess.run(
            [helm, "template", "stalk", str(CHART), "--namespace", "stalk-system",
             "--kube-version", KUBE_VERSION, *MONITORING_API, "-f", str(values)],
            capture_output=True, text=True, check=True,
        ).stdout  # fmt: skip
        written.append(directory / values.name)
        written[-1].write_text(rendered)
    kustomized = subprocess.run(
        [str(Path(helm).parent / "kubectl"), "kustomize", str(ROOT / "manifests")],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    written.append(directory / "kustomize-manifests.yaml")
    written[-1].write_text(kustomized)
    return written


def test_every_finding_is_fixed_or_accepted_with_a_reason(tmp_path):
    scanner = checkov()
    files = renderings(tmp_path)
    scan = subprocess.run(
        [scanner, "-d", str(tmp_path), "--framework", "kubernetes", "-o", "json", "--quiet",
         "--skip-download"],  # nothing from the vendor's API: the checks are built in
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    reports = json.loads(scan.stdout)
    reports = reports if isinstance(reports, list) else [reports]
    failed = [f for r in reports for f in r["results"]["failed_checks"]]
    assert sum(r["summary"]["resource_count"] for r in reports) > 50, "checkov read the files"
    accepted = yaml.safe_load(EXCEPTIONS.read_text())
    for entry in accepted:
        assert entry["reason"].strip(), entry["check"]

    def reason_for(finding: dict) -> dict | None:
        return next(
            (
                e
                for e in accepted
                if e["check"] == finding["check_id"]
                and any(fnmatch.fnmatchcase(finding["resource"], p) for p in e["resources"])
            ),
            None,
        )

    unexplained = sorted(
        {
            f"{f['check_id']} {f['resource']} ({f['check_name']})"
            for f in failed
            if not reason_for(f)
        }
    )
    used = {id(reason_for(f)) for f in failed}
    stale = [e["check"] for e in accepted if id(e) not in used]
    by_check = Counter(f["check_id"] for f in failed)
    print(
        f"\ncheckov {len(files)} renderings: {len(failed)} findings in {len(by_check)} checks, "
        f"all accepted in {EXCEPTIONS.name} ({dict(sorted(by_check.items()))}); "
        f"{len(unexplained)} unexplained"
    )
    assert not unexplained, "\n".join(unexplained)
    assert not stale, f"accepted but no longer found (remove them): {stale}"
