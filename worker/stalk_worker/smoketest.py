"""``stalk-smoke-test``: send one task through the broker and wait for its result.

The chart's ``helm test`` hook runs this with the same settings as every Stalk process,
so a pass means: the broker (through Sentinel, with its password) takes tasks, a worker
consumes the queue, and results come back.
"""

from __future__ import annotations

import argparse
import sys
import time

from celery.exceptions import TimeoutError as ResultTimeout

ADD = "stalk_worker.tasks.canvas.add"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--queue", default="default", help="a queue some TaskQueue consumes")
    parser.add_argument("--timeout", type=float, default=120, help="seconds to wait")
    args = parser.parse_args(argv)

    from stalk_worker.app import app

    started = time.monotonic()
    result = app.send_task(ADD, args=(2, 3), queue=args.queue)
    print(f"sent {ADD}(2, 3) to queue {args.queue!r} as {result.id}", flush=True)
    try:
        value = result.get(timeout=args.timeout)
    except ResultTimeout:
        print(
            f"FAIL: no result within {args.timeout:.0f}s; is a TaskQueue consuming "
            f"{args.queue!r}, and can its workers start?",
            file=sys.stderr,
        )
        return 1
    if value != 5:
        print(f"FAIL: expected 5, got {value!r}", file=sys.stderr)
        return 1
    print(f"ok: result 5 after {time.monotonic() - started:.1f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
