"""Read many pools in one call: queue lengths, the oldest messages, and in-flight work
summed server-side.

A Lua script does, for each pool, one ``LLEN`` per list and a sum over the pool's fresh
load records (the JSON of :class:`stalk_broker.WorkerLoad`, decoded with Redis' cjson).
For each list that holds messages it also reads the tail (the oldest message) and the
head (the newest) with ``LINDEX`` and returns a 48-bit identity of each (the start of
the message's SHA-1) and the tail's publish stamp (:data:`PUBLISHED_AT_HEADER`, set by
producers that opt in), from which the operator bounds how long the oldest task has
waited (``stalk_operator.scaling.waiting``). An idle pool adds one empty string.

Which keys to read is stored in Redis as a "poll set" when
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
PUBLISHED_AT_HEADER = "stalk_published_at"
"""The message header a producer's publish hook stamps its send time in (unix seconds),
found in the raw message by a pattern: kombu's Redis transport writes headers as plain
JSON and the body base64-encoded, so the body cannot hold a false match."""
IDENTITY_HEX_DIGITS = 12

READ_POOLS_SCRIPT = """
-- KEYS[1]: the poll set's key list: per pool, its list keys then its load-record hash.
-- KEYS[2]: the poll set's counts: per pool, how many list keys it has.
-- ARGV: now (unix seconds), staleness limit in seconds, record version, poll set TTL.
-- Returns false when the poll set is missing (so the caller writes it again); else, per
-- pool: each list's length; the oldest messages ("" when every list is empty, else per
-- list "tail head stamp", lists joined by ";", an empty list as ""); then the summed
-- task run time (ms) of the workers that report one and how many do; then in-flight
-- tasks, busy workers, and reporting workers.
if redis.call('EXISTS', KEYS[2]) == 0 then return false end
local function identity(message)
  return string.sub(redis.sha1hex(message), 1, IDENTITY_HEX_DIGITS)
end
local now, stale, version = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
redis.call('EXPIRE', KEYS[1], ARGV[4])
redis.call('EXPIRE', KEYS[2], ARGV[4])
local keys = redis.call('LRANGE', KEYS[1], 0, -1)
local counts = redis.call('LRANGE', KEYS[2], 0, -1)
local out, k = {}, 1
for p = 1, #counts do
  local oldest, waiting = {}, false
  for l = 1, tonumber(counts[p]) do
    local length = redis.call('LLEN', keys[k])
    out[#out + 1] = length
    oldest[l] = ''
    if length > 0 then
      local tail = redis.call('LINDEX', keys[k], -1)
      local head = tail
      if length > 1 then head = redis.call('LINDEX', keys[k], 0) end
      if tail and head then
        local stamp = string.match(tail, '"PUBLISHED_AT_HEADER": *([0-9.]+)') or ''
        oldest[l] = identity(tail) .. ' ' .. identity(head) .. ' ' .. stamp
        waiting = true
      end
    end
    k = k + 1
  end
  out[#out + 1] = waiting and table.concat(oldest, ';') or ''
  local in_flight, busy, reporting, runtime_ms, timed = 0, 0, 0, 0, 0
  for _, raw in ipairs(redis.call('HVALS', keys[k])) do
    local ok, r = pcall(cjson.decode, raw)
    if ok and type(r) == 'table' and r.v == version and type(r.updated) == 'number'
        and now - r.updated <= stale then
      local held = math.max(0, tonumber(r.active) or 0) + math.max(0, tonumber(r.reserved) or 0)
      in_flight = in_flight + held
      reporting = reporting + 1
      if held > 0 then busy = busy + 1 end
      local runtime = tonumber(r.runtime)
      if runtime and runtime > 0 then
        runtime_ms = runtime_ms + math.floor(runtime * 1000)
        timed = timed + 1
      end
    end
  end
  k = k + 1
  out[#out + 1] = runtime_ms
  out[#out + 1] = timed
  out[#out + 1] = in_flight
  out[#out + 1] = busy
  out[#out + 1] = reporting
end
return out
""".replace("PUBLISHED_AT_HEADER", PUBLISHED_AT_HEADER).replace(
    "IDENTITY_HEX_DIGITS", str(IDENTITY_HEX_DIGITS)
)


@dataclass(frozen=True)
class PoolQuery:
    pool: str
    queues: tuple[str, ...]
    layout: KeyLayout


@dataclass(frozen=True)
class ListEnds:
    """The ends of one list that holds messages."""

    tail: int
    """Identity of the oldest message."""
    head: int
    """Identity of the newest message."""
    published_at: float | None
    """The oldest message's publish stamp, where the producer set one."""


@dataclass(frozen=True)
class PoolReading:
    lengths: tuple[int, ...]
    """Per queue, per priority step, in the order of ``layout.queue_lists``."""
    ends: tuple[ListEnds | None, ...]
    """In the same order: each list's ends, ``None`` for an empty list."""
    in_flight: int
    busy_workers: int
    reporting_workers: int
    """Workers with a fresh load record: 0 means no agent reports for this pool."""
    runtime: float | None = None
    """Mean seconds a task runs, over the workers that measured one."""

    @classmethod
    def of(cls, part: Sequence[Any]) -> PoolReading:
        """One pool's part of the script's reply (see :func:`reply_spans`)."""
        *lengths, oldest, runtime_ms, timed, in_flight, busy, reporting = part
        counts = tuple(int(n) for n in lengths)
        runtime = int(runtime_ms) / int(timed) / 1000 if int(timed) else None
        return cls(
            counts,
            parse_ends(oldest, len(counts)),
            int(in_flight),
            int(busy),
            int(reporting),
            runtime,
        )


def parse_ends(oldest: bytes | str, lists: int) -> tuple[ListEnds | None, ...]:
    """The script's description of a pool's oldest messages, one entry per list."""
    text = oldest.decode() if isinstance(oldest, bytes) else oldest
    if not text:
        return (None,) * lists
    ends: list[ListEnds | None] = []
    for entry in text.split(";"):
        if not entry:
            ends.append(None)
            continue
        tail, head, stamp = entry.split(" ")
        ends.append(ListEnds(int(tail, 16), int(head, 16), float(stamp) if stamp else None))
    return tuple(ends)


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
        end = index + len(query.queues) * len(query.layout.priority_steps) + 6
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
