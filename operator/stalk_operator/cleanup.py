"""``python -m stalk_operator.cleanup``: delete TaskQueues while the operator still runs.

kopf keeps a finalizer on each TaskQueue for its scaling daemon, and only a running
operator removes it. The chart's pre-delete hook runs this before the operator goes, so
``helm uninstall`` never leaves TaskQueues stuck in deletion.
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

from lightkube import Client
from lightkube.core.exceptions import ApiError

from stalk_operator.actuation import TaskQueueResource


def delete_taskqueues(
    client: Client, namespace: str, selector: dict[str, Any], timeout: float
) -> int:
    """Delete the matching TaskQueues and wait until they are gone; returns how many."""
    names = [
        tq.metadata.name
        for tq in client.list(TaskQueueResource, namespace=namespace, labels=selector)
        if tq.metadata is not None and tq.metadata.name
    ]
    for name in names:
        try:
            client.delete(TaskQueueResource, name, namespace=namespace)
        except ApiError as exc:
            if exc.status.code != 404:
                raise
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        left = list(client.list(TaskQueueResource, namespace=namespace, labels=selector))
        if not left:
            return len(names)
        time.sleep(1)
    raise TimeoutError(f"TaskQueues still there after {timeout:.0f}s: is the operator running?")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--namespace", required=True)
    parser.add_argument("--selector", required=True, help="label=value of the TaskQueues")
    parser.add_argument("--timeout", type=float, default=90.0, help="seconds to wait")
    args = parser.parse_args(argv)
    key, _, value = args.selector.partition("=")
    try:
        count = delete_taskqueues(Client(), args.namespace, {key: value}, args.timeout)
    except (ApiError, TimeoutError) as exc:
        print(f"cleanup failed: {exc}", file=sys.stderr)
        return 1
    print(f"deleted {count} TaskQueues in {args.namespace}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
