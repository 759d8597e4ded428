"""When a TaskQueue's Deployment needs applying. Pure: the caller passes ``now``.

* After every change of the spec (its generation).
* When it is missing from the watch's cache for longer than the cache needs to show a
  Deployment just created (someone deleted it).
* After an operator restart, only if this operator would write another template than
  the one stamped on the Deployment: 10,000 unchanged Deployments are not re-applied.
* Never over a Deployment that another object controls.
"""

from __future__ import annotations

from typing import Any

from stalk_operator.model import TaskQueue
from stalk_operator.workload import DeploymentState, build_deployment, template_hash

CACHE_GRACE_SECONDS = 5.0
"""How long a Deployment we applied may be missing from the cache before we apply again."""


class Rollout:
    def __init__(self) -> None:
        self.applied: tuple[int, float] | None = None
        """``(generation, when)`` of the last apply the API server accepted."""
        self._built: tuple[TaskQueue, dict[str, Any]] | None = None

    def manifest(self, taskqueue: TaskQueue) -> dict[str, Any]:
        """The Deployment manifest of this spec, built once per spec."""
        if self._built is None or self._built[0] is not taskqueue:
            self._built = (taskqueue, build_deployment(taskqueue))
        return self._built[1]

    def needed(self, taskqueue: TaskQueue, deployment: DeploymentState | None, now: float) -> bool:
        if deployment is not None and not deployment.owned_by(taskqueue.uid):
            return False  # someone else's: never written (the report says so)
        if self.applied is None and deployment is not None and self._current(taskqueue, deployment):
            self.applied = (taskqueue.generation, now)
        if self.applied is None or self.applied[0] != taskqueue.generation:
            return True
        return deployment is None and now - self.applied[1] > CACHE_GRACE_SECONDS

    def _current(self, taskqueue: TaskQueue, deployment: DeploymentState) -> bool:
        """Whether the Deployment has the template this operator would apply."""
        return deployment.template_hash == template_hash(self.manifest(taskqueue))

    def done(self, taskqueue: TaskQueue, now: float) -> None:
        self.applied = (taskqueue.generation, now)
