"""Generated files stay equal to their sources (`make generate` rewrites them)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parents[2]


def test_generated_files_are_current():
    """The CRD copies, references, tables and shared constants; the manifests rendered
    from the chart need helm and are checked with the chart's tests."""
    result = subprocess.run(
        [sys.executable, str(ROOT / "hack" / "generate.py"), "--check"],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr


def test_check_names_a_stale_file(tmp_path, monkeypatch):
    """The check fails, naming the file, when a generated file is edited by hand."""
    reference = ROOT / "docs" / "taskqueue-reference.md"
    original = reference.read_text()
    try:
        reference.write_text(original + "\nhand edit\n")
        result = subprocess.run(
            [sys.executable, str(ROOT / "hack" / "generate.py"), "--check"],
            capture_output=True,
            text=True,
        )
    finally:
        reference.write_text(original)
    assert result.returncode == 1
    assert "docs/taskqueue-reference.md" in result.stderr
