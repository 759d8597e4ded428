"""``stalk-worker-alive``: the liveness probe command, without a broadcast.

``celery inspect ping`` sends a broadcast through the broker and waits for every reply,
so a busy broker fails healthy workers. The worker instead touches a file from its event
loop (:class:`stalk_worker.bootsteps.HeartbeatFile`); this command checks that file's age.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path


def heartbeat_age(path: Path, now: float | None = None) -> float | None:
    """Seconds since the heartbeat file was touched; ``None`` if there is none."""
    try:
        mtime = path.stat().st_mtime
    except FileNotFoundError:
        return None
    return (time.time() if now is None else now) - mtime


def main(argv: list[str] | None = None) -> int:
    from stalk_worker.runtime import settings

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument(
        "--max-age", type=float, default=None, help="seconds; default 6 heartbeat intervals"
    )
    parser.add_argument("--file", type=Path, default=None, help="heartbeat file to check")
    args = parser.parse_args(argv)
    config = settings()
    path = args.file or Path(config.heartbeat_file)
    max_age = args.max_age if args.max_age is not None else 6 * config.heartbeat_interval_seconds
    age = heartbeat_age(path)
    if age is None:
        print(f"not alive: no heartbeat file at {path}", file=sys.stderr)
        return 1
    if age > max_age:
        print(f"not alive: heartbeat is {age:.1f}s old (limit {max_age:.1f}s)", file=sys.stderr)
        return 1
    print(f"alive: heartbeat {age:.1f}s old")
    return 0


if __name__ == "__main__":
    sys.exit(main())
