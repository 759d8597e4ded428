"""The canvas examples users copy run on a real worker and give the documented results."""

from __future__ import annotations

import pytest
from stalk_worker.tasks.canvas import example_chain, example_chord, example_group
from workers import client_app

pytestmark = pytest.mark.integration


def test_chain_group_and_chord(workers, broker_env):
    workers.start(broker_env, queues=["default"])
    with client_app(broker_env):
        assert example_chain(2, 3, 4).apply_async().get(timeout=30) == 20
        assert example_group([(1, 1), (2, 2), (3, 3)]).apply_async().get(timeout=30) == [2, 4, 6]
        assert example_chord(10).apply_async().get(timeout=30) == 285
