"""Print docs/taskqueue-reference.md from the CRD's own descriptions (one source).

python hack/crd_reference.py > docs/taskqueue-reference.md
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import yaml

CRD = Path(__file__).resolve().parents[1] / "manifests" / "crd" / "stalk.dev_taskqueues.yaml"


def _type(schema: dict[str, Any]) -> str:
    kind = schema.get("type", "object")
    if kind == "array":
        return f"[]{_type(schema.get('items', {}))}"
    if "enum" in schema:
        return " \\| ".join(f"`{v}`" for v in schema["enum"])
    return str(kind)


def _limits(schema: dict[str, Any]) -> str:
    parts = []
    if "default" in schema and schema["default"] != {}:
        parts.append(f"default `{schema['default']}`")
    for key, label in (
        ("minimum", "min"),
        ("maximum", "max"),
        ("minItems", "min items"),
        ("maxItems", "max items"),
        ("pattern", "pattern"),
    ):
        if key in schema:
            parts.append(f"{label} `{schema[key]}`")
    for rule in schema.get("x-kubernetes-validations", []):
        parts.append(f"rule: {rule['message']}")
    return "; ".join(parts)


def rows(schema: dict[str, Any], path: str, required: set[str]) -> list[str]:
    out = []
    for name, child in schema.get("properties", {}).items():
        field = f"{path}.{name}" if path else name
        flag = " (required)" if name in required else ""
        description = " ".join(child.get("description", "").split())
        out.append(f"| `{field}`{flag} | {_type(child)} | {description} | {_limits(child)} |")
        target = child.get("items", child) if child.get("type") == "array" else child
        if target.get("properties") and not target.get("x-kubernetes-preserve-unknown-fields"):
            out += rows(
                target,
                field + ("[]" if child.get("type") == "array" else ""),
                set(target.get("required", [])),
            )
    return out


def render() -> str:
    crd = yaml.safe_load(CRD.read_text())
    version = crd["spec"]["versions"][0]
    schema = version["schema"]["openAPIV3Schema"]
    lines = [
        "# TaskQueue reference",
        "",
        f"`{crd['spec']['group']}/{version['name']}`, kind `{crd['spec']['names']['kind']}`, "
        f"short name `{crd['spec']['names']['shortNames'][0]}`. "
        "Generated from the CRD by `hack/crd_reference.py`; `kubectl explain tq.spec` shows "
        "the same text.",
        "",
        " ".join(schema["description"].split()),
        "",
    ]
    for section in ("spec", "status"):
        part = schema["properties"][section]
        lines += [
            f"## {section}",
            "",
            "| field | type | meaning | default and limits |",
            "| --- | --- | --- | --- |",
            *rows(part, section, set(part.get("required", []))),
            "",
        ]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.stdout.write(render())
