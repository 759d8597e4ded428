"""What a TaskQueue's author may put into its worker pods. Pure.

Whoever may edit a TaskQueue runs code as its workers without needing the right to create
pods, so Stalk builds only the pods the Pod Security Standards' *restricted* profile would
admit, with no containers but its own and the namespace's default ServiceAccount. A
platform team widens that per namespace, by name:

* ``HostNamespaces``: ``hostNetwork``, ``hostPID``, ``hostIPC`` and host ports;
* ``HostPath``: ``hostPath`` volumes;
* ``Privileged``: privileged containers, privilege escalation, added capabilities, root,
  sysctls and unconfined seccomp or AppArmor profiles;
* ``ExtraContainers``: ``containers``, ``initContainers`` and ``ephemeralContainers``
  beside the worker;
* ``serviceAccounts``: the ServiceAccounts worker pods may run as.

The rules are enforced twice with the same wording: at admission by the
ValidatingAdmissionPolicy shipped with the CRD (its lists come from this module through
``make generate``), so ``kubectl apply`` fails at once; and by the operator, which
refuses to build such a pod if the policy is missing. Only the admission side checks
that the author may read the Secrets a TaskQueue references: the operator never learns
who wrote it.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from stalk_operator.model import WorkerSpec

HOST_NAMESPACES = "HostNamespaces"
HOST_PATH = "HostPath"
PRIVILEGED = "Privileged"
EXTRA_CONTAINERS = "ExtraContainers"
ALLOWANCES = (HOST_NAMESPACES, HOST_PATH, PRIVILEGED, EXTRA_CONTAINERS)

POD_FIELDS = (
    "automountServiceAccountToken",
    "dnsConfig",
    "dnsPolicy",
    "enableServiceLinks",
    "hostAliases",
    "hostUsers",
    "hostname",
    "imagePullSecrets",
    "os",
    "preemptionPolicy",
    "priorityClassName",
    "readinessGates",
    "resourceClaims",
    "resources",
    "schedulingGates",
    "securityContext",
    "setHostnameAsFQDN",
    "shareProcessNamespace",
    "subdomain",
    "topologySpreadConstraints",
    "volumes",
)
"""``podTemplate`` fields anyone may set. Scheduling and identity fields with a field of
their own in ``spec.worker`` (nodeSelector, tolerations, affinity, serviceAccountName,
terminationGracePeriodSeconds) are set there; ``nodeName``, ``runtimeClassName`` and
``schedulerName`` would step around the cluster's scheduling and runtime choices."""

HOST_NAMESPACE_FIELDS = ("hostNetwork", "hostPID", "hostIPC")
CONTAINER_FIELDS = ("containers", "initContainers", "ephemeralContainers")

VOLUME_TYPES = (
    "configMap",
    "csi",
    "downwardAPI",
    "emptyDir",
    "ephemeral",
    "persistentVolumeClaim",
    "projected",
    "secret",
)
"""The volume types of the restricted profile; ``hostPath`` needs ``HostPath``."""

ALLOWED_CAPABILITIES = ("NET_BIND_SERVICE",)


class PodPolicyError(ValueError):
    """The operator's pod policy setting is malformed."""


class PodNotAllowedError(Exception):
    """A TaskQueue asks for a worker pod its namespace's policy does not allow."""


@dataclass(frozen=True)
class NamespacePolicy:
    """What TaskQueue authors of one namespace may add to the restricted default."""

    allow: frozenset[str] = frozenset()
    service_accounts: frozenset[str] = frozenset()

    def allows(self, allowance: str) -> bool:
        return allowance in self.allow


@dataclass(frozen=True)
class PodPolicy:
    namespaces: Mapping[str, NamespacePolicy]

    def for_namespace(self, namespace: str) -> NamespacePolicy:
        return self.namespaces.get(namespace) or NamespacePolicy()

    @classmethod
    def from_json(cls, text: str) -> PodPolicy:
        """``{"<namespace>": {"allow": [...], "serviceAccounts": [...]}}``, the chart's
        ``taskQueuePolicy.namespaces``."""
        try:
            raw = json.loads(text or "{}")
        except json.JSONDecodeError as exc:
            raise PodPolicyError(f"not JSON: {exc}") from None
        if not isinstance(raw, dict):
            raise PodPolicyError("must map namespaces to {allow, serviceAccounts}")
        namespaces = {}
        for namespace, entry in raw.items():
            entry = entry or {}
            unknown = set(entry) - {"allow", "serviceAccounts"}
            allow = set(entry.get("allow") or ())
            if unknown or not allow <= set(ALLOWANCES):
                raise PodPolicyError(
                    f"{namespace}: expected allow (of {', '.join(ALLOWANCES)}) and "
                    f"serviceAccounts; got {sorted(unknown | (allow - set(ALLOWANCES)))}"
                )
            namespaces[namespace] = NamespacePolicy(
                frozenset(allow), frozenset(entry.get("serviceAccounts") or ())
            )
        return cls(namespaces)


def check(worker: WorkerSpec, namespace: str, policy: PodPolicy) -> None:
    """Raise :class:`PodNotAllowedError` naming every refusal, if there is any."""
    allowed = policy.for_namespace(namespace)
    found = refusals(worker.pod_template, worker.service_account_name, allowed)
    if found:
        raise PodNotAllowedError(
            "; ".join(found) + " (see the operator's STALK_POD_POLICY, the chart's "
            "taskQueuePolicy.namespaces)"
        )


def refusals(
    pod_template: Mapping[str, Any], service_account: str | None, policy: NamespacePolicy
) -> list[str]:
    """Why a worker pod may not be built, one message per refusal (none: it may)."""
    found = [*_fields(pod_template, policy)]
    found += _volumes(pod_template.get("volumes") or (), policy)
    containers = [c for field in CONTAINER_FIELDS for c in pod_template.get(field) or ()]
    if not policy.allows(PRIVILEGED):
        found += [
            f"podTemplate container {c.get('name')} asks for privileges: needs the "
            f"{PRIVILEGED} allowance"
            for c in containers
            if _privileged_container(c.get("securityContext") or {})
        ]
        if _privileged_pod(pod_template.get("securityContext") or {}):
            found.append(
                f"podTemplate.securityContext asks for privileges: needs the {PRIVILEGED} allowance"
            )
    if not policy.allows(HOST_NAMESPACES):
        found += [
            f"podTemplate container {c.get('name')} asks for a host port: needs the "
            f"{HOST_NAMESPACES} allowance"
            for c in containers
            if any(p.get("hostPort") for p in c.get("ports") or ())
        ]
    if service_account and service_account not in policy.service_accounts:
        found.append(
            f"serviceAccountName {service_account} is not among the ServiceAccounts the "
            "Stalk policy allows in this namespace"
        )
    return found


def _fields(pod_template: Mapping[str, Any], policy: NamespacePolicy) -> Iterable[str]:
    for field, value in pod_template.items():
        if field in POD_FIELDS:
            continue
        if field in HOST_NAMESPACE_FIELDS:
            if value is False or policy.allows(HOST_NAMESPACES):
                continue
            yield f"podTemplate.{field} needs the {HOST_NAMESPACES} allowance"
        elif field in CONTAINER_FIELDS:
            if policy.allows(EXTRA_CONTAINERS):
                continue
            yield f"podTemplate.{field} needs the {EXTRA_CONTAINERS} allowance"
        else:
            yield f"podTemplate.{field} is not allowed"


def _volumes(volumes: Sequence[Mapping[str, Any]], policy: NamespacePolicy) -> Iterable[str]:
    for volume in volumes:
        kinds = [k for k in volume if k != "name" and k not in VOLUME_TYPES]
        if "hostPath" in kinds and policy.allows(HOST_PATH):
            kinds.remove("hostPath")
        if not kinds:
            continue
        refusal = (
            f"hostPath needs the {HOST_PATH} allowance"
            if "hostPath" in volume
            else f"type {kinds[0]} is not allowed"
        )
        yield f"podTemplate volume {volume.get('name')}: {refusal}"


def _privileged_container(context: Mapping[str, Any]) -> bool:
    added = (context.get("capabilities") or {}).get("add") or ()
    return (
        context.get("privileged") is True
        or context.get("allowPrivilegeEscalation") is True
        or any(c not in ALLOWED_CAPABILITIES for c in added)
        or context.get("procMount") == "Unmasked"
        or _privileged_pod(context)
    )


def _privileged_pod(context: Mapping[str, Any]) -> bool:
    return (
        context.get("runAsUser") == 0
        or context.get("runAsNonRoot") is False
        or "sysctls" in context
        or "seLinuxOptions" in context
        or (context.get("seccompProfile") or {}).get("type") == "Unconfined"
        or (context.get("appArmorProfile") or {}).get("type") == "Unconfined"
        or (context.get("windowsOptions") or {}).get("hostProcess") is True
    )
