"""Messages with priorities land in the lists kombu uses, and Stalk counts all of them."""

from __future__ import annotations

import pytest
from stalk_broker import KeyLayout
from stalk_broker.depth import fold_queue_depths, queue_depth_commands
from workers import client_app

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("prefix", ["", "tenant-a:"])
def test_priorities_land_in_kombu_lists_and_are_all_counted(broker_env, redis_db, prefix):
    env = {**broker_env, "STALK_GLOBAL_KEYPREFIX": prefix}
    with client_app(env) as app:
        for priority in range(10):
            app.send_task(
                "stalk_worker.tasks.canvas.add", args=(1, 2), queue="burst", priority=priority
            )
    client = redis_db.client()
    sep = "\x06\x16"
    lengths = {
        key: client.llen(prefix + key)
        for key in ("burst", f"burst{sep}3", f"burst{sep}6", f"burst{sep}9")
    }
    # kombu bands priorities down to the nearest step of [0, 3, 6, 9].
    assert lengths == {"burst": 3, f"burst{sep}3": 3, f"burst{sep}6": 3, f"burst{sep}9": 1}
    assert client.llen("burst") == (3 if not prefix else 0), "the prefix must apply to every key"

    layout = KeyLayout(global_keyprefix=prefix)
    assert layout.queue_lists("burst") == [prefix + key for key in lengths]
    pipe = client.pipeline(transaction=False)
    queue_depth_commands(pipe, layout, ["burst", "idle"])
    burst, idle = fold_queue_depths(layout, ["burst", "idle"], pipe.execute())
    assert burst.total == 10, "LLEN of the plain list alone would say 3"
    assert idle.total == 0


def test_custom_priority_steps_are_honoured(broker_env, redis_db):
    env = {**broker_env, "STALK_PRIORITY_STEPS": "0,5"}
    with client_app(env) as app:
        for priority in (0, 4, 5, 9):
            app.send_task(
                "stalk_worker.tasks.canvas.add", args=(1, 2), queue="q", priority=priority
            )
    layout = KeyLayout(priority_steps=(0, 5))
    client = redis_db.client()
    assert [client.llen(key) for key in layout.queue_lists("q")] == [2, 2]
