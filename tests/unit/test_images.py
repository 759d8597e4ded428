"""The Dockerfiles: hadolint-clean, non-root, dependencies cached apart from the code.

No Docker engine runs here, so the images are not built in CI; `hack/kind-demo.sh`
builds them where Docker is available.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from stalk_config import conventions

ROOT = Path(__file__).parents[2]
DOCKERFILES = [ROOT / "Dockerfile.worker", ROOT / "Dockerfile.operator"]


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_hadolint_clean(dockerfile):
    hadolint = shutil.which("hadolint") or str(
        Path(__import__("sys").executable).parent / "hadolint"
    )
    result = subprocess.run([hadolint, str(dockerfile)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_runs_as_non_root_with_a_cached_dependency_layer(dockerfile):
    lines = [line.strip() for line in dockerfile.read_text().splitlines()]
    assert lines[0] == "# syntax=docker/dockerfile:1", "a parser directive must come first"
    final_stage = lines[max(i for i, line in enumerate(lines) if line.startswith("FROM")) :]
    assert f"ARG STALK_UID={conventions.RUNTIME_UID}" in final_stage
    assert "USER ${STALK_UID}:${STALK_UID}" in final_stage
    deps = next(i for i, line in enumerate(lines) if "pip install" in line and "[" in line)
    code = next(i for i, line in enumerate(lines) if line.startswith("COPY common/"))
    assert deps < code, "dependencies must be installed before the code is copied"


def test_dockerignore_admits_only_what_the_images_need():
    text = (ROOT / ".dockerignore").read_text()
    assert text.splitlines()[1] == "*" or "\n*\n" in text
    for needed in ("!pyproject.toml", "!common/", "!worker/", "!operator/"):
        assert needed in text
