"""The poll script and the Python record reader agree on every kind of load record."""

from __future__ import annotations

import time

import pytest
from stalk_broker import KeyLayout, WorkerLoad, worker_state_key
from stalk_broker.pool_reader import (
    READ_POOLS_SCRIPT,
    PoolQuery,
    poll_set,
    script_arguments,
    split_reply,
)

pytestmark = pytest.mark.integration


def test_script_sums_what_the_python_reader_accepts(redis_db):
    client = redis_db.client()
    now = time.time()
    records = {
        "busy": WorkerLoad(active=2, reserved=1, consuming=True, updated=now, runtime=3.0).encode(),
        "idle": WorkerLoad(active=0, reserved=0, consuming=True, updated=now, runtime=1.5).encode(),
        "reserved-only": WorkerLoad(active=0, reserved=1, consuming=False, updated=now).encode(),
        "stale": WorkerLoad(active=5, reserved=0, consuming=True, updated=now - 60).encode(),
        "garbage": "not json",
        "future-version": '{"v": 2, "active": 9, "reserved": 0, "consuming": true, '
        f'"updated": {now}}}',
        "negative": f'{{"v": 1, "active": -3, "reserved": 0, "consuming": true, "updated": {now}}}',
    }
    client.hset(worker_state_key("ns/a", "p:"), mapping=records)
    layout = KeyLayout(global_keyprefix="p:")
    for step, count in zip(layout.priority_steps, (1, 2, 0, 4), strict=True):
        if count:
            client.rpush(layout.prefixed(layout.priority_list("jobs", step)), *["m"] * count)

    python_view = [
        load
        for raw in records.values()
        if (load := WorkerLoad.decode(raw)) is not None and load.is_fresh(now)
    ]
    queries = [PoolQuery("ns/a", ("jobs",), layout), PoolQuery("ns/empty", ("none",), layout)]
    keys, counts = poll_set(queries)
    client.rpush("set:keys", *keys)
    client.rpush("set:counts", *counts)
    script = client.register_script(READ_POOLS_SCRIPT)
    reply = script(keys=["set:keys", "set:counts"], args=script_arguments(now, 10.0))
    busy_pool, empty_pool = split_reply(queries, reply)

    assert busy_pool.lengths == (1, 2, 0, 4)
    assert busy_pool.in_flight == sum(w.in_flight for w in python_view) == 4
    assert busy_pool.busy_workers == sum(1 for w in python_view if w.busy) == 2
    assert busy_pool.reporting_workers == len(python_view)
    timed = [w.runtime for w in python_view if w.runtime]
    assert busy_pool.runtime == sum(timed) / len(timed) == 2.25  # workers with a figure
    # Each non-empty list's oldest and newest message (the same "m" here).
    assert [e is not None for e in busy_pool.ends] == [True, True, False, True]
    assert empty_pool.runtime is None and empty_pool.ends == (None,) * 4
    assert (empty_pool.lengths, empty_pool.in_flight, empty_pool.busy_workers) == (
        (0, 0, 0, 0),
        0,
        0,
    )
    assert empty_pool.reporting_workers == 0, "no records: no agent reports for this pool"
    client.delete("set:counts")
    assert script(keys=["set:keys", "set:counts"], args=script_arguments(now, 10.0)) is None
