"""Generated documentation stays equal to its source."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from stalk_config import markdown_table
from stalk_operator.settings import OperatorSettings

ROOT = Path(__file__).parents[2]


def test_taskqueue_reference_matches_the_crd():
    spec = importlib.util.spec_from_file_location(
        "crd_reference", ROOT / "hack" / "crd_reference.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert (ROOT / "docs" / "taskqueue-reference.md").read_text() == module.render(), (
        "docs/taskqueue-reference.md is stale: python hack/crd_reference.py > "
        "docs/taskqueue-reference.md"
    )


def test_readme_documents_every_operator_variable():
    assert markdown_table(OperatorSettings) in (ROOT / "README.md").read_text(), (
        "README's operator table is stale: paste `python -m stalk_operator.settings`"
    )
