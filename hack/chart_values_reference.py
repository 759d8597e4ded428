"""Print the values table of charts/stalk/README.md: every value, its default (from
values.yaml) and its description (from values.schema.json, else the `# --` comment above
it in values.yaml). A value with neither is an error: every value is documented.

python hack/chart_values_reference.py   # prints the table
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

import yaml

CHART = Path(__file__).resolve().parents[1] / "charts" / "stalk"
_KEY = re.compile(r"^(?P<indent> *)(?P<key>[A-Za-z][\w.-]*):")


def comment_descriptions(text: str) -> dict[str, str]:
    """`# -- text` comments (helm-docs style) by the dotted path of the key below them."""
    found: dict[str, str] = {}
    path: list[tuple[int, str]] = []
    pending: list[str] = []
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("# --"):
            pending = [stripped[4:].strip()]
            continue
        if stripped.startswith("#") and pending:
            pending.append(stripped[1:].strip())
            continue
        match = _KEY.match(line)
        if not match:
            pending = []
            continue
        indent = len(match["indent"])
        path = [(i, k) for i, k in path if i < indent] + [(indent, match["key"])]
        if pending:
            found[".".join(k for _, k in path)] = " ".join(pending)
            pending = []
    return found


def _leaves(schema: dict[str, Any], values: Any, prefix: str) -> list[tuple[str, dict, Any]]:
    properties = schema.get("properties")
    # Resources (requests/limits) read as one value, as in values.yaml.
    if not properties or not isinstance(values, dict) or set(properties) == {"requests", "limits"}:
        return [(prefix, schema, values)]
    rows = []
    for key, sub in properties.items():
        if "$ref" in sub and "properties" not in sub:
            sub = {**_resolve(sub["$ref"]), **{k: v for k, v in sub.items() if k != "$ref"}}
        rows += _leaves(sub, values.get(key), f"{prefix}.{key}" if prefix else key)
    return rows


_ROOT_SCHEMA: dict[str, Any] = {}


def _resolve(ref: str) -> dict[str, Any]:
    node: Any = _ROOT_SCHEMA
    for part in ref.removeprefix("#/").split("/"):
        node = node[part]
    return dict(node)


def _default(value: Any) -> str:
    if value is None:
        return ""
    text = json.dumps(value, separators=(", ", ": "))
    return f"`{text}`" if len(text) <= 60 else "see values.yaml"


def table() -> str:
    schema = json.loads((CHART / "values.schema.json").read_text())
    _ROOT_SCHEMA.clear()
    _ROOT_SCHEMA.update(schema)
    values_text = (CHART / "values.yaml").read_text()
    values = yaml.safe_load(values_text)
    comments = comment_descriptions(values_text)
    lines = ["| value | default | description |", "| --- | --- | --- |"]
    undocumented = []
    for path, sub, value in _leaves(schema, values, ""):
        description = comments.get(path) or sub.get("description", "")
        if not description:
            undocumented.append(path)
        cell = description.replace("|", "\\|")
        lines.append(f"| `{path}` | {_default(value)} | {cell} |")
    if undocumented:
        raise SystemExit(f"values without a description: {', '.join(undocumented)}")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.stdout.write(table())
