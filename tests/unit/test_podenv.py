"""Container environments as the kubelet resolves them (the process kubelet's part)."""

from __future__ import annotations

from pathlib import Path

import pytest
from lightkube.resources.core_v1 import Pod
from stalk_devenv.podenv import container_env, expand, map_paths


def pod(env=None, env_from=None, namespace="team-a") -> Pod:
    return Pod.from_dict(
        {
            "metadata": {
                "name": "w-1",
                "namespace": namespace,
                "uid": "u1",
                "labels": {"app": "w"},
            },
            "spec": {
                "nodeName": "node-0",
                "containers": [{"name": "worker", "env": env or [], "envFrom": env_from or []}],
            },
            "status": {"podIP": "10.244.0.7"},
        }
    )


def lookups(store: dict):
    reads = []

    def lookup(namespace, name, optional):
        reads.append((namespace, name))
        if (namespace, name) in store:
            return store[(namespace, name)]
        if optional:
            return {}
        raise LookupError(f"{namespace}/{name} not found")

    return lookup, reads


def resolve(p: Pod, secrets=None, config_maps=None, mounts=None):
    secret, secret_reads = lookups(secrets or {})
    config_map, _ = lookups(config_maps or {})
    env = container_env(p, p.spec.containers[0], mounts or {}, secret, config_map)
    return env, secret_reads


def test_values_expand_against_what_is_defined_before_them():
    env, _ = resolve(
        pod(
            [
                {"name": "HOST", "value": "redis"},
                {"name": "URL", "value": "redis://$(HOST):6379/$(DB)"},
                {"name": "PRICE", "value": "$$5"},
            ]
        )
    )
    assert env["URL"] == "redis://redis:6379/$(DB)", "an undefined name stays as written"
    assert env["PRICE"] == "$5"


def test_references_are_read_in_the_pods_own_namespace():
    secrets = {("team-a", "redis"): {"password": "pw"}, ("team-a", "all"): {"A": "1", "B": "2"}}
    env, reads = resolve(
        pod(
            [{"name": "PW", "valueFrom": {"secretKeyRef": {"name": "redis", "key": "password"}}}],
            [{"secretRef": {"name": "all"}, "prefix": "X_"}],
        ),
        secrets=secrets,
    )
    assert env == {"X_A": "1", "X_B": "2", "PW": "pw"}
    assert {ns for ns, _ in reads} == {"team-a"}


def test_optional_sources_may_be_missing_and_required_ones_may_not():
    optional = {"secretKeyRef": {"name": "nope", "key": "k", "optional": True}}
    env, _ = resolve(pod([{"name": "MAYBE", "valueFrom": optional}]))
    assert "MAYBE" not in env
    with pytest.raises(LookupError):
        resolve(pod([{"name": "MUST", "valueFrom": {"secretKeyRef": {"name": "no", "key": "k"}}}]))


def test_downward_api():
    field = lambda path: {"fieldRef": {"fieldPath": path}}  # noqa: E731
    env, _ = resolve(
        pod(
            [
                {"name": "POD", "valueFrom": field("metadata.name")},
                {"name": "NS", "valueFrom": field("metadata.namespace")},
                {"name": "IP", "valueFrom": field("status.podIP")},
                {"name": "APP", "valueFrom": field("metadata.labels['app']")},
            ]
        )
    )
    assert env == {"POD": "w-1", "NS": "team-a", "IP": "10.244.0.7", "APP": "w"}


def test_paths_under_an_empty_dir_map_to_the_local_directory(tmp_path):
    mounts = {"/tmp": tmp_path / "tmp", "/tmp/cache": tmp_path / "cache"}
    assert map_paths("/tmp/heartbeat", mounts) == str(tmp_path / "tmp" / "heartbeat")
    assert map_paths("/tmp/cache/x", mounts) == str(tmp_path / "cache" / "x")
    assert map_paths("/tmpfile", mounts) == "/tmpfile"
    env, _ = resolve(pod([{"name": "F", "value": "/tmp/f"}]), mounts=mounts)
    assert env["F"] == str(Path(tmp_path / "tmp" / "f"))
    assert expand("$(F)", env) == env["F"]
