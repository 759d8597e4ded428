"""Facts that Python, the chart's templates and the Dockerfiles share.

Defined once here; ``make generate`` writes them into ``charts/stalk/templates/
_conventions.tpl`` and the Dockerfiles' ``ARG`` lines, and a test fails when a copy is
stale.
"""

RUNTIME_UID = 10001
"""The uid and gid of every Stalk image, and of the pods Stalk renders for them."""

WORKER_MANAGED_BY = "stalk-operator"
"""``app.kubernetes.io/managed-by`` of every worker Deployment and pod the operator runs:
how the operator's watch, the chart's NetworkPolicies and the local kubelet find them."""

AGENT_HEALTH_PORT = 8801
"""Where the Stalk agent serves ``/healthz`` in a worker or beat container: the agent's
default, the port of the worker pods the operator renders, and the chart's beat probe."""

AGENT_PORT_NAME = "stalk-agent"
"""The name of that port on worker pods: the chart's PodMonitor scrapes the agent's
``/metrics`` through it."""
