"""Generated documentation stays equal to its source."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

from stalk_config import markdown_table
from stalk_operator.settings import OperatorSettings

ROOT = Path(__file__).parents[2]


def _hack_script(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, ROOT / "hack" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_taskqueue_reference_matches_the_crd():
    module = _hack_script("crd_reference")
    assert (ROOT / "docs" / "taskqueue-reference.md").read_text() == module.render(), (
        "docs/taskqueue-reference.md is stale: python hack/crd_reference.py > "
        "docs/taskqueue-reference.md"
    )


def test_readme_documents_every_operator_variable():
    assert markdown_table(OperatorSettings) in (ROOT / "README.md").read_text(), (
        "README's operator table is stale: paste `python -m stalk_operator.settings`"
    )


def test_chart_readme_documents_every_value():
    module = _hack_script("chart_values_reference")
    readme = (ROOT / "charts" / "stalk" / "README.md").read_text()
    generated = readme.split("<!-- values:begin -->\n")[1].split("<!-- values:end -->")[0]
    assert generated == module.table(), (
        "charts/stalk/README.md is stale: regenerate its table with "
        "python hack/chart_values_reference.py"
    )
