"""Teams' own Celery apps for the tests: each installed, with Celery alone, into a
virtualenv of its own (no Stalk package in it), built once and cached.

The process kubelet runs a pod whose image is the app's image name from that
virtualenv, as a real kubelet would run the team's image.
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

import pytest
from stalk_devenv.binaries import cache_root

APPS = Path(__file__).parent / "apps"
ACME_IMAGE = "registry.acme.test/jobs:1.0"
"""The image name ACME's TaskQueues name: the kubelet maps it to the app's virtualenv."""


def app_venv(name: str) -> Path:
    """The bin directory of a virtualenv holding only the app ``name`` and its needs."""
    source = APPS / name
    digest = hashlib.sha256()
    for path in [*sorted(source.rglob("*.py")), source / "pyproject.toml"]:
        digest.update(path.read_bytes())
    venv = cache_root() / "venvs" / f"{name}-{digest.hexdigest()[:12]}"
    stamp = venv / ".installed"
    if not stamp.exists():
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True)
        pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "-q"]
        try:
            subprocess.run([*pip, str(source)], check=True, capture_output=True, text=True)
        except subprocess.CalledProcessError as exc:
            pytest.fail(f"cannot install the {name} app: {exc.stderr[-2000:]}")
        stamp.touch()
    probe = subprocess.run(
        [str(venv / "bin" / "python"), "-c", "import stalk_worker"], capture_output=True
    )
    assert probe.returncode != 0, "the team's virtualenv must not contain Stalk"
    return venv / "bin"
