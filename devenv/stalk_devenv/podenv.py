"""A container's environment, resolved the way the kubelet resolves it. Pure.

``envFrom`` sources first (Secrets and ConfigMaps, with their prefix), then ``env`` in
order: plain values with ``$(VAR)`` expansion against what is defined so far, and
``valueFrom`` references to Secrets, ConfigMaps and the downward API. Every reference
is read in the pod's own namespace. Paths under an ``emptyDir`` mount are mapped to the
local directory that stands in for it.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from pathlib import Path

from lightkube.models.core_v1 import Container, EnvVar
from lightkube.resources.core_v1 import Pod

Lookup = Callable[[str, str, bool], Mapping[str, str]]
"""``(namespace, name, optional) -> data`` of a Secret or ConfigMap; an optional one that
is missing reads as empty, a required one raises."""

_VAR_REF = re.compile(r"\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)|\$\$")
_LABEL_REF = re.compile(r"metadata\.(labels|annotations)\['([^']+)'\]")


def expand(text: str, env: Mapping[str, str]) -> str:
    """Kubernetes ``$(VAR)`` expansion: defined names are replaced, ``$$`` escapes ``$``."""

    def replace(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        return env.get(match.group(1), match.group(0))

    return _VAR_REF.sub(replace, text)


def map_paths(text: str, mounts: Mapping[str, Path]) -> str:
    """Rewrite a value under a container mount path to the pod's local directory."""
    for mount_path in sorted(mounts, key=len, reverse=True):
        if text == mount_path or text.startswith(mount_path.rstrip("/") + "/"):
            return str(mounts[mount_path]) + text[len(mount_path.rstrip("/")) :]
    return text


def namespace_of(pod: Pod) -> str:
    return (pod.metadata.namespace if pod.metadata else None) or "default"


def container_env(
    pod: Pod,
    container: Container,
    mounts: Mapping[str, Path],
    secret: Lookup,
    config_map: Lookup,
) -> dict[str, str]:
    """The environment the kubelet would give ``container`` of ``pod``."""
    namespace = namespace_of(pod)
    env: dict[str, str] = {}
    for source in container.envFrom or []:
        data: Mapping[str, str] = {}
        if source.secretRef is not None:
            ref = source.secretRef
            data = secret(namespace, ref.name or "", bool(ref.optional))
        elif source.configMapRef is not None:
            cm_ref = source.configMapRef
            data = config_map(namespace, cm_ref.name or "", bool(cm_ref.optional))
        env.update({f"{source.prefix or ''}{k}": v for k, v in data.items()})
    for var in container.env or []:
        value = _value(pod, var, env, secret, config_map)
        if value is not None:
            env[var.name] = map_paths(value, mounts)
    return env


def _value(
    pod: Pod, var: EnvVar, defined: Mapping[str, str], secret: Lookup, config_map: Lookup
) -> str | None:
    if var.valueFrom is None:
        return expand(var.value or "", defined)
    source, namespace = var.valueFrom, namespace_of(pod)
    if source.fieldRef is not None:
        return field_value(pod, source.fieldRef.fieldPath)
    if source.secretKeyRef is not None:
        ref = source.secretKeyRef
        return secret(namespace, ref.name or "", bool(ref.optional)).get(ref.key)
    if source.configMapKeyRef is not None:
        cm = source.configMapKeyRef
        return config_map(namespace, cm.name or "", bool(cm.optional)).get(cm.key)
    if source.resourceFieldRef is not None:
        return "1"
    return None


def field_value(pod: Pod, path: str) -> str:
    """A downward-API ``fieldRef``."""
    meta, spec, status = pod.metadata, pod.spec, pod.status
    assert meta is not None
    simple = {
        "metadata.name": meta.name,
        "metadata.namespace": meta.namespace,
        "metadata.uid": meta.uid,
        "spec.nodeName": spec.nodeName if spec else None,
        "spec.serviceAccountName": spec.serviceAccountName if spec else None,
        "status.podIP": status.podIP if status else None,
        "status.hostIP": status.hostIP if status else None,
    }
    if path in simple:
        return str(simple[path] or "")
    match = _LABEL_REF.fullmatch(path)
    if match:
        values = meta.labels if match.group(1) == "labels" else meta.annotations
        return str((values or {}).get(match.group(2), ""))
    raise ValueError(f"unsupported fieldRef {path!r}")
