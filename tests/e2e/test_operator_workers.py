"""The operator with real workers behind its pods: busy workers are never scaled away."""

from __future__ import annotations

import pytest
from scenarios import LONG_TASK_SECONDS, grace_scenario

pytestmark = pytest.mark.e2e


def test_scale_down_removes_idle_workers_only_and_busy_ones_hold_the_pool(
    cluster, namespace, stalk_operator, process_kubelet, redis_db, redis_password
):
    seen = grace_scenario(
        cluster,
        namespace,
        stalk_operator,
        process_kubelet,
        redis_db,
        redis_password,
        deletion_cost=True,
    )
    assert seen["unfinished_tasks"] == 0, seen
    assert seen["killed_pods"] == 0, seen
    assert seen["history"][-1] == 0, "idle at last, the pool scales to zero"
    long = [o for o in seen["outcomes"] if o["seconds"] == LONG_TASK_SECONDS]
    first_long_done = min(o["finished"] for o in long)
    reached_four = next(t for t, replicas in seen["wall_history"] if replicas == 4)
    while_both_ran = [r for t, r in seen["wall_history"] if reached_four <= t < first_long_done]
    assert while_both_ran, seen
    assert min(while_both_ran) >= 2, (
        "until a long task finished, the two busy workers held the pool"
    )
    long_hosts = {o["hostname"] for o in long}
    assert len(long_hosts) == 2, "each long task ran to the end on the worker that took it"
