"""When a TaskQueue's Deployment needs applying. Pure: the caller passes ``now``.

* After every change of the spec (its generation).
* When it is missing from the watch's cache for longer than the cache needs to show a
  Deployment just created (someone deleted it).
* After an operator restart, only if this operator would write another template than
  the one stamped on the Deployment: 10,000 unchanged Deployments are not re-applied
  (nor applied before the Deployment watch has had a chance to report them).
* Never over a Deployment that another object controls.
"""

from __future__ import annotations

from typing import Any

from stalk_operator.model import TaskQueue
from stalk_operator.workload import DeploymentState, build_deployment, template_hash

CACHE_GRACE_SECONDS = 5.0
"""How long a Deployment we applied may be missing from the cache before we apply again."""


class Rollout:
    def __init__(self, had_deployment: bool, now: float) -> None:
        self.applied: tuple[int, float] | None = None
        """``(generation, when)`` of the last apply the API server accepted."""
        self._patient_until = now + CACHE_GRACE_SECONDS if had_deployment else 0.0
        """A TaskQueue whose status names its Deployment had one before this operator
        started: the Deployment watch gets this long to report it before any apply."""
        self._hash: tuple[TaskQueue, str | None] | None = None

    def manifest(self, taskqueue: TaskQueue) -> dict[str, Any]:
        return build_deployment(taskqueue)

    def needed(self, taskqueue: TaskQueue, deployment: DeploymentState | None, now: float) -> bool:
        if deployment is not None and not deployment.owned_by(taskqueue.uid):
            return False  # someone else's: never written (the report says so)
        if self.applied is None and deployment is not None and self._current(taskqueue, deployment):
            self.done(taskqueue, now)
        if self.applied is None and deployment is None and now < self._patient_until:
            return False
        if self.applied is None or self.applied[0] != taskqueue.generation:
            return True
        return deployment is None and now - self.applied[1] > CACHE_GRACE_SECONDS

    def _current(self, taskqueue: TaskQueue, deployment: DeploymentState) -> bool:
        """Whether the Deployment has the template this operator would apply (its hash is
        kept per spec; the manifest itself is not)."""
        if self._hash is None or self._hash[0] is not taskqueue:
            self._hash = (taskqueue, template_hash(build_deployment(taskqueue)))
        return deployment.template_hash == self._hash[1]

    def done(self, taskqueue: TaskQueue, now: float) -> None:
        self.applied = (taskqueue.generation, now)
        self._hash = None
