"""The poll set: the keys a poller's script reads, kept in Redis under names of its own.

Written when the subscriptions change (and again when a broker restart has emptied it),
so that a poll of 10,000 TaskQueues sends a script call with two key names rather than
every list name (:mod:`stalk_broker.pool_reader` describes the layout and the reply).
"""

from __future__ import annotations

import uuid
from typing import Any

import redis.asyncio
from stalk_broker.pool_reader import (
    POLL_SET_TTL_SECONDS,
    READ_POOLS_SCRIPT,
    PoolQuery,
    check_reply,
    poll_set,
    reply_spans,
)


class PollSet:
    def __init__(self, client: redis.asyncio.Redis) -> None:
        self._client = client
        self._read_pools = client.register_script(READ_POOLS_SCRIPT)
        poller_id = uuid.uuid4().hex
        self._keys = [f"stalk:pollset:{poller_id}:keys", f"stalk:pollset:{poller_id}:counts"]
        self._queries: list[PoolQuery] = []
        self.spans: list[tuple[int, int]] = []
        """Where each query's part of a reply starts and ends."""

    async def write(self, queries: list[PoolQuery]) -> None:
        keys, counts = poll_set(queries)
        list_key, counts_key = self._keys
        pipe = self._client.pipeline(transaction=True)
        pipe.delete(list_key, counts_key)
        for start in range(0, len(keys), 1000):
            pipe.rpush(list_key, *keys[start : start + 1000])
        pipe.rpush(counts_key, *counts)
        pipe.expire(list_key, POLL_SET_TTL_SECONDS)
        pipe.expire(counts_key, POLL_SET_TTL_SECONDS)
        await pipe.execute()
        self._queries, self.spans = queries, reply_spans(queries)

    async def read(self, args: list[Any]) -> list[Any]:
        """The script's reply for every query written, checked against their spans."""
        reply = await self._read_pools(keys=self._keys, args=args)
        if reply is None:  # the poll set is gone (a broker restart): write it again
            await self.write(self._queries)
            reply = await self._read_pools(keys=self._keys, args=args)
        check_reply(self.spans, reply)
        return list(reply)
