"""TaskQueue objects for tests, defaulted as the API server defaults them: from the CRD.

The operator trusts the API server to have applied the CRD's defaults, so tests that
parse bodies without an API server apply the same defaults, read from the same schema
(structural defaulting: a missing field with a default gets it, then its own fields are
defaulted in turn).
"""

from __future__ import annotations

import copy
from dataclasses import replace
from functools import cache
from pathlib import Path
from typing import Any

import yaml
from stalk_operator.model import ScalingPolicy, TaskQueue, parse_taskqueue
from stalk_operator.settings import OperatorSettings

CRD = Path(__file__).parents[1] / "manifests" / "crd" / "stalk.dev_taskqueues.yaml"


@cache
def schema() -> dict[str, Any]:
    crd = yaml.safe_load(CRD.read_text())
    return crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]


def apply_defaults(value: Any, node: dict[str, Any]) -> Any:
    if isinstance(value, dict):
        for key, child in (node.get("properties") or {}).items():
            if key not in value and "default" in child:
                value[key] = copy.deepcopy(child["default"])
            if key in value:
                value[key] = apply_defaults(value[key], child)
    elif isinstance(value, list) and "items" in node:
        return [apply_defaults(item, node["items"]) for item in value]
    return value


def taskqueue(name: str, queues: list[str], **spec: object) -> dict[str, Any]:
    """A TaskQueue body as a user writes it (no defaults): for ``kubectl apply``."""
    return {
        "apiVersion": "stalk.dev/v1alpha1",
        "kind": "TaskQueue",
        "metadata": {"name": name},
        "spec": {"queues": queues, **spec},
    }


def stored(
    name: str, queues: list[str], namespace: str = "default", uid: str = "uid-1", **spec: object
) -> dict[str, Any]:
    """The same TaskQueue as the API server stores it: defaulted, with a uid."""
    body = taskqueue(name, queues, **spec)
    body["metadata"].update(namespace=namespace, uid=uid, generation=1)
    return apply_defaults(body, schema())


def parsed(body: dict[str, Any], **environ: str) -> TaskQueue:
    """A stored body as the operator, configured by ``environ``, parses it."""
    return parse_taskqueue(body, OperatorSettings.from_environ(environ))


def policy(**fields: Any) -> ScalingPolicy:
    """``spec.scaling`` with the CRD's defaults, then ``fields`` (the model's names)."""
    return replace(parsed(stored("t", ["q"])).scaling, **fields)
