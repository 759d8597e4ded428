"""Two operator replicas never both act: kopf peering pauses the lower priority."""

from __future__ import annotations

import pytest
from kube import ReplicaWatch, wait_for
from taskqueues import taskqueue

pytestmark = pytest.mark.e2e


def test_standby_stays_paused_and_takes_over_when_the_active_one_dies(
    cluster, namespace, stalk_operator
):
    # No KopfPeering yet, as after `kubectl apply -k manifests/`: the first operator to
    # start creates it (kopf would otherwise keep every replica paused).
    peering = {"STALK_STANDALONE": "false", "STALK_PEERING_LIFETIME_SECONDS": "8"}
    active = stalk_operator(STALK_PRIORITY="200", **peering)
    standby = stalk_operator(STALK_PRIORITY="100", **peering)

    def creators() -> list:
        return [o for o in (active, standby) if "created the KopfPeering 'stalk'" in o.log()]

    wait_for(creators, 15, "an operator to create the KopfPeering")
    assert cluster.get_json("kopfpeering", "stalk", namespace=namespace)["metadata"]["name"]
    # kopf starts every operator paused until it has seen its peers; only the
    # highest-priority one resumes.
    wait_for(lambda: "Resuming operations" in active.log(), 30, "the active operator to resume")

    cluster.apply(taskqueue("mail", ["mail"], scaling={"minReplicas": 2}), namespace=namespace)
    watch = ReplicaWatch(cluster.kubeconfig, namespace, "mail")
    watch.wait_for(2, 15)
    applied = f"{namespace}/mail: applied its Deployment"
    wait_for(lambda: applied in active.log(), 10, "the active operator to log its apply")
    assert applied not in standby.log(), "the standby did nothing"
    assert "Resuming operations" not in standby.log()
    assert len(creators()) == 1, "one created it, the other found it"

    active.kill()
    cluster.kubectl(
        "patch",
        "tq",
        "mail",
        "--type=merge",
        "-p",
        '{"spec":{"scaling":{"minReplicas":3}}}',
        namespace=namespace,
    )
    watch.wait_for(3, 45)  # once the dead peer's 8 s lifetime has run out
    assert "Resuming operations" in standby.log()
