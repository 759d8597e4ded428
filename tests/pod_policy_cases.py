"""Worker pods a TaskQueue author may not ask for, and the refusals each one gets.

One table for both enforcers: the unit tests run it through the operator's check, the e2e
tests through the API server's admission policy, so the two can never drift apart.
"""

from __future__ import annotations

from typing import Any

SIDECAR = {"name": "side", "image": "busybox"}

FORBIDDEN: list[tuple[str, dict[str, Any], list[str]]] = [
    (
        "host network",
        {"podTemplate": {"hostNetwork": True}},
        ["podTemplate.hostNetwork needs the HostNamespaces allowance"],
    ),
    (
        "host PID",
        {"podTemplate": {"hostPID": True}},
        ["podTemplate.hostPID needs the HostNamespaces allowance"],
    ),
    (
        "host IPC",
        {"podTemplate": {"hostIPC": True}},
        ["podTemplate.hostIPC needs the HostNamespaces allowance"],
    ),
    (
        "hostPath volume",
        {"podTemplate": {"volumes": [{"name": "root", "hostPath": {"path": "/"}}]}},
        ["podTemplate volume root: hostPath needs the HostPath allowance"],
    ),
    (
        "nfs volume",
        {"podTemplate": {"volumes": [{"name": "share", "nfs": {"server": "s", "path": "/"}}]}},
        ["podTemplate volume share: type nfs is not allowed"],
    ),
    (
        "extra container",
        {"podTemplate": {"containers": [SIDECAR]}},
        ["podTemplate.containers needs the ExtraContainers allowance"],
    ),
    (
        "init container",
        {"podTemplate": {"initContainers": [SIDECAR]}},
        ["podTemplate.initContainers needs the ExtraContainers allowance"],
    ),
    (
        "node name",
        {"podTemplate": {"nodeName": "control-plane"}},
        ["podTemplate.nodeName is not allowed"],
    ),
    (
        "runtime class",
        {"podTemplate": {"runtimeClassName": "unconfined"}},
        ["podTemplate.runtimeClassName is not allowed"],
    ),
    (
        "service account through the template",
        {"podTemplate": {"serviceAccountName": "admin"}},
        ["podTemplate.serviceAccountName is not allowed"],
    ),
    (
        "root pod",
        {"podTemplate": {"securityContext": {"runAsUser": 0}}},
        ["podTemplate.securityContext asks for privileges: needs the Privileged allowance"],
    ),
    (
        "sysctls",
        {
            "podTemplate": {
                "securityContext": {"sysctls": [{"name": "kernel.shm_rmid_forced", "value": "1"}]}
            }
        },
        ["podTemplate.securityContext asks for privileges: needs the Privileged allowance"],
    ),
    (
        "unconfined seccomp",
        {"podTemplate": {"securityContext": {"seccompProfile": {"type": "Unconfined"}}}},
        ["podTemplate.securityContext asks for privileges: needs the Privileged allowance"],
    ),
    (
        "foreign service account",
        {"serviceAccountName": "cluster-admin-bot"},
        [
            "serviceAccountName cluster-admin-bot is not among the ServiceAccounts the Stalk "
            "policy allows in this namespace"
        ],
    ),
    (
        "privileged sidecar, host port",
        {
            "podTemplate": {
                "containers": [
                    {
                        **SIDECAR,
                        "securityContext": {"privileged": True},
                        "ports": [{"containerPort": 80, "hostPort": 80}],
                    }
                ]
            }
        },
        [
            "podTemplate.containers needs the ExtraContainers allowance",
            "podTemplate container side asks for privileges: needs the Privileged allowance",
            "podTemplate container side asks for a host port: needs the HostNamespaces allowance",
        ],
    ),
]
"""``(case, spec.worker fields, refusals in order)``, under the default policy."""

WIDENED: list[tuple[str, dict[str, Any], dict[str, Any]]] = [
    (
        "sidecar with ExtraContainers",
        {"podTemplate": {"containers": [SIDECAR]}},
        {"allow": ["ExtraContainers"]},
    ),
    (
        "hostPath with HostPath",
        {"podTemplate": {"volumes": [{"name": "logs", "hostPath": {"path": "/var/log"}}]}},
        {"allow": ["HostPath"]},
    ),
    (
        "named service account",
        {"serviceAccountName": "batch-worker"},
        {"serviceAccounts": ["batch-worker"]},
    ),
]
"""``(case, spec.worker fields, the namespace's policy)``: allowed once widened."""

ALLOWED: list[tuple[str, dict[str, Any]]] = [
    (
        "restricted extras",
        {
            "podTemplate": {
                "priorityClassName": "batch",
                "hostNetwork": False,
                "volumes": [
                    {"name": "config", "configMap": {"name": "app"}},
                    {"name": "scratch", "emptyDir": {}},
                ],
                "securityContext": {"runAsUser": 20000, "fsGroup": 20000},
            }
        },
    ),
]
"""``(case, spec.worker fields)`` anyone may ask for."""
