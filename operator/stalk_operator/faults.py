"""What a TaskQueue's loop does when something fails: back off, say so once, carry on. Pure.

A loop never ends on an error. The failure becomes a :class:`Fault` with a reason a user
can act on; the loop retries after a backoff that grows to a few seconds, so it recovers
within seconds of the cause going away. The log and the Events hear of a fault when it
begins or changes, and once more when it ends, never once per retry; the refusals of
an API server that is still starting belong to the outage before them.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import httpx2
from lightkube.core.exceptions import ApiError

from stalk_operator.actuation import DeploymentNotOwnedError
from stalk_operator.broker import SecretUnavailableError
from stalk_operator.pod_policy import PodNotAllowedError

BACKOFF_SECONDS = (0.5, 1.0, 2.0, 4.0, 5.0)
"""Waits after the 1st, 2nd, ... consecutive failure; the last one repeats."""

KUBERNETES_UNREACHABLE = "KubernetesUnreachable"
"""The API server cannot serve now: no connection, a timeout, or an answer that says so
(429, 5xx), as while it stops, starts or is overloaded; one outage is one fault."""
KUBERNETES_REFUSED = "KubernetesRefused"
"""The API server answered no to this request (4xx): retrying alone will not fix it."""
UNAVAILABLE_STATUSES = frozenset({429, 500, 502, 503, 504})
STARTING_STATUSES = frozenset({401, 403, 404})
"""Refusals an API server gives while it starts: it serves before its authenticator,
RBAC and CRD caches have synced, and says no until they have (its /readyz, which a load
balancer heeds, says it is not ready yet; a client that reaches it directly sees them)."""
STARTING_SECONDS = 15.0
"""How long after the API server was last unreachable those refusals count as its outage
going on, not as news; one that lasts longer is a refusal of its own."""
SECRET_UNAVAILABLE = "SecretUnavailable"  # noqa: S105 - a condition reason
DEPLOYMENT_NOT_OWNED = "DeploymentNotOwned"
POD_NOT_ALLOWED = "PodNotAllowed"
INTERNAL_ERROR = "InternalError"


@dataclass(frozen=True)
class Fault:
    reason: str
    """CamelCase, for conditions and Events."""

    message: str
    """What failed, with no secret in it."""

    since: float
    attempts: int = 1
    retry_at: float = 0.0

    def retry(self, now: float) -> Fault:
        return replace(self, attempts=self.attempts + 1, retry_at=now + backoff(self.attempts + 1))


def backoff(attempts: int) -> float:
    return BACKOFF_SECONDS[min(attempts, len(BACKOFF_SECONDS)) - 1]


def classify(exc: BaseException, api_server_starting: bool = False) -> tuple[str, str]:
    """The reason and message of a failure; ``api_server_starting`` when the API server
    could not serve moments ago."""
    if isinstance(exc, SecretUnavailableError):
        return SECRET_UNAVAILABLE, str(exc)
    if isinstance(exc, DeploymentNotOwnedError):
        return DEPLOYMENT_NOT_OWNED, str(exc)
    if isinstance(exc, PodNotAllowedError):
        return POD_NOT_ALLOWED, str(exc)
    if isinstance(exc, ApiError):
        status = exc.status
        said = f"{status.code} {status.reason}: {status.message}"[:500]
        starting = api_server_starting and status.code in STARTING_STATUSES
        unreachable = api_server_unavailable(exc) or starting
        return (KUBERNETES_UNREACHABLE if unreachable else KUBERNETES_REFUSED), said
    if api_server_unavailable(exc):
        return KUBERNETES_UNREACHABLE, f"{type(exc).__name__}: {exc}"[:500]
    return INTERNAL_ERROR, f"{type(exc).__name__}: {exc}"[:500]


def api_server_unavailable(exc: BaseException) -> bool:
    """Whether the API server could not serve at all: no answer, or one that says so."""
    if isinstance(exc, ApiError):
        return exc.status.code in UNAVAILABLE_STATUSES
    return isinstance(exc, httpx2.HTTPError | OSError | TimeoutError)


@dataclass
class FaultTracker:
    current: Fault | None = None
    unreachable_at: float | None = None
    """When the API server last could not serve; kept after the fault ends."""

    def failed(self, exc: BaseException, now: float) -> Fault | None:
        """Record a failure; the fault when it is news (a new fault, or one of another
        reason: the same cause keeps its reason while its wording varies, connection
        refused, reset, timed out)."""
        reason, message = classify(exc, self.api_server_starting(now))
        if api_server_unavailable(exc):
            self.unreachable_at = now
        fault = self.current
        if fault is not None and fault.reason == reason:
            self.current = replace(fault.retry(now), message=message)
            return None
        self.current = Fault(reason, message, since=now, retry_at=now + backoff(1))
        return self.current

    def api_server_starting(self, now: float) -> bool:
        """Whether a refusal now may be the API server still starting."""
        return self.unreachable_at is not None and now - self.unreachable_at < STARTING_SECONDS

    def succeeded(self) -> Fault | None:
        """Clear the fault; returns the one that just ended, if any."""
        ended, self.current = self.current, None
        return ended

    def waiting(self, now: float) -> bool:
        """Whether the loop should hold off until the next retry."""
        return self.current is not None and now < self.current.retry_at
