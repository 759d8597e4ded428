"""Read many pools in one call: queue lengths, and in-flight work summed server-side.

A Lua script does, for each pool, one ``LLEN`` per list and a sum over the pool's fresh
load records (the JSON of :class:`stalk_broker.WorkerLoad`, decoded with Redis' cjson),
and returns integers only. Which keys to read is stored in Redis as a "poll set" when
the pools change, not sent with every call: packing thousands of key names per poll
costs the client more than the whole read costs Redis. The client then sends two key
names and parses one small reply, which keeps 1,000 pools within a few milliseconds.

The script reads the record format that ``worker_state.py`` writes; the tests feed both
the same records so the two readers cannot drift apart.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from stalk_broker.keys import KeyLayout
from stalk_broker.worker_state import RECORD_VERSION, worker_state_key

POLL_SET_TTL_SECONDS = 3600

READ_POOLS_SCRIPT = """
-- KEYS[1]: the poll set's key list: per pool, its list keys then its load-record hash.
-- KEYS[2]: the poll set's counts: per pool, how many list keys it has.
-- ARGV: now (unix seconds), staleness limit in seconds, record version, poll set TTL.
-- Returns false when the poll set is missing (so the caller writes it again); else, per
-- pool: each list's length, then in-flight tasks, busy workers, and reporting workers.
if redis.call('EXISTS', KEYS[2]) == 0 then return false end
local now, stale, version = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
redis.call('EXPIRE', KEYS[1], ARGV[4])
redis.call('EXPIRE', KEYS[2], ARGV[4])
local keys = redis.call('LRANGE', KEYS[1], 0, -1)
local counts = redis.call('LRANGE', KEYS[2], 0, -1)
local out, k = {}, 1
for p = 1, #counts do
  for _ = 1, tonumber(counts[p]) do
    out[#out + 1] = redis.call('LLEN', keys[k])
    k = k + 1
  end
  local in_flight, busy, reporting = 0, 0, 0
  for _, raw in ipairs(redis.call('HVALS', keys[k])) do
    local ok, r = pcall(cjson.decode, raw)
    if ok and type(r) == 'table' and r.v == version and type(r.updated) == 'number'
        and now - r.updated <= stale then
      local held = math.max(0, tonumber(r.active) or 0) + math.max(0, tonumber(r.reserved) or 0)
      in_flight = in_flight + held
      reporting = reporting + 1
      if held > 0 then busy = busy + 1 end
    end
  end
  k = k + 1
  out[#out + 1] = in_flight
  out[#out + 1] = busy
  out[#out + 1] = reporting
end
return out
"""


@dataclass(frozen=True)
class PoolQuery:
    pool: str
    queues: tuple[str, ...]
    layout: KeyLayout


@dataclass(frozen=True)
class PoolReading:
    lengths: tuple[int, ...]
    """Per queue, per priority step, in the order of ``layout.queue_lists``."""
    in_flight: int
    busy_workers: int
    reporting_workers: int
    """Workers with a fresh load record: 0 means no agent reports for this pool."""

    @classmethod
    def of(cls, part: Sequence[Any]) -> PoolReading:
        """One pool's part of the script's reply (see :func:`reply_spans`)."""
        *lengths, in_flight, busy, reporting = (int(n) for n in part)
        return cls(tuple(lengths), in_flight, busy, reporting)


def poll_set(queries: Sequence[PoolQuery]) -> tuple[list[str], list[int]]:
    """The poll set's contents: every key to read, and each pool's list count."""
    keys: list[str] = []
    counts: list[int] = []
    for query in queries:
        lists = [key for queue in query.queues for key in query.layout.queue_lists(queue)]
        keys += [*lists, worker_state_key(query.pool, query.layout.global_keyprefix)]
        counts.append(len(lists))
    return keys, counts


def script_arguments(now: float, stale_after: float) -> list[Any]:
    return [now, stale_after, RECORD_VERSION, POLL_SET_TTL_SECONDS]


def reply_spans(queries: Sequence[PoolQuery]) -> list[tuple[int, int]]:
    """Where each pool's part lies in the script's reply: ``reply[start:end]``. Known
    when the poll set is written, so a poll compares each part with the last one's and
    parses only what changed."""
    spans, index = [], 0
    for query in queries:
        end = index + len(query.queues) * len(query.layout.priority_steps) + 3
        spans.append((index, end))
        index = end
    return spans


def check_reply(spans: Sequence[tuple[int, int]], reply: Sequence[Any]) -> None:
    if (spans[-1][1] if spans else 0) != len(reply):
        raise ValueError("the script's reply does not match the pools asked for")


def split_reply(queries: Sequence[PoolQuery], reply: Sequence[Any]) -> list[PoolReading]:
    spans = reply_spans(queries)
    check_reply(spans, reply)
    return [PoolReading.of(reply[start:end]) for start, end in spans]
