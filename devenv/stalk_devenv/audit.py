"""Where a secret must never show: logs, TaskQueue statuses and Events. Pure.

The demo runs the whole stack with generated passwords, then hands every log file and
what the API server shows of its TaskQueues to :func:`leaks`; one hit fails the run.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping


def leaks(secrets: Mapping[str, str], texts: Iterable[tuple[str, str]]) -> list[str]:
    """``"<secret> in <where>"`` for every secret found in a text; none is news."""
    found = []
    for where, text in texts:
        for name, value in secrets.items():
            if value and value in text:
                found.append(f"{name} in {where}")
    return found
