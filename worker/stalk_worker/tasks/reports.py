"""Reports: aggregate rows by a key into CSV, JSON and HTML files.

A report's files are named by its report id (the task id unless given), so a retry
rewrites the same files rather than adding new ones.
"""

from __future__ import annotations

import csv
import html
import json
import re
from collections import defaultdict
from pathlib import Path
from typing import Any

from celery import shared_task

from stalk_worker.runtime import settings
from stalk_worker.taskkit import PermanentError
from stalk_worker.tasks.files import atomic_write

FORMATS = ("csv", "json", "html")
_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


def aggregate(
    rows: list[dict[str, Any]], group_by: str, metrics: list[str]
) -> list[dict[str, Any]]:
    """One row per distinct ``group_by`` value: count, and sum/avg/min/max of each metric."""
    groups: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        if group_by not in row:
            raise PermanentError(f"row without the group key {group_by!r}: {row}")
        groups[str(row[group_by])].append(row)
    table = []
    for key in sorted(groups):
        members = groups[key]
        out: dict[str, Any] = {group_by: key, "count": len(members)}
        for metric in metrics:
            try:
                values = [float(m[metric]) for m in members if m.get(metric) is not None]
            except (TypeError, ValueError):
                raise PermanentError(f"metric {metric!r} is not numeric in group {key!r}") from None
            total = sum(values)
            out[f"{metric}_sum"] = round(total, 6)
            out[f"{metric}_avg"] = round(total / len(values), 6) if values else None
            out[f"{metric}_min"] = min(values) if values else None
            out[f"{metric}_max"] = max(values) if values else None
        table.append(out)
    return table


def render_html(title: str, table: list[dict[str, Any]]) -> str:
    columns = list(table[0]) if table else []
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = "".join(
        "<tr>"
        + "".join(f"<td>{html.escape('' if r[c] is None else str(r[c]))}</td>" for c in columns)
        + "</tr>"
        for r in table
    )
    return (
        f'<!doctype html><html><head><meta charset="utf-8"><title>{html.escape(title)}'
        f"</title></head><body><h1>{html.escape(title)}</h1><table><thead><tr>{head}"
        f"</tr></thead><tbody>{body}</tbody></table></body></html>\n"
    )


def _write_csv(path: Path, table: list[dict[str, Any]]) -> None:
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(table[0]) if table else [])
        writer.writeheader()
        writer.writerows(table)


@shared_task(
    name="stalk_worker.tasks.reports.generate_report",
    bind=True,
    soft_time_limit=600,
    time_limit=660,
)
def generate_report(
    self: Any,
    name: str,
    rows: list[dict[str, Any]],
    group_by: str,
    metrics: list[str] | None = None,
    formats: list[str] | None = None,
    report_id: str | None = None,
) -> dict[str, Any]:
    """Aggregate ``rows`` and write the report in each of ``formats``; returns the paths."""
    if not _SAFE_NAME.match(name):
        raise PermanentError(f"report name must be a simple file name: {name!r}")
    wanted = formats or list(FORMATS)
    unknown = set(wanted) - set(FORMATS)
    if unknown:
        raise PermanentError(f"unknown report formats: {sorted(unknown)}")
    table = aggregate(rows, group_by, metrics or [])
    ident = report_id or self.request.id
    if not _SAFE_NAME.match(ident):
        raise PermanentError(f"report id must be a simple file name: {ident!r}")
    directory = Path(settings().reports_dir) / name
    writers = {
        "csv": lambda p: _write_csv(p, table),
        "json": lambda p: p.write_text(
            json.dumps({"report": name, "id": ident, "group_by": group_by, "rows": table}, indent=2)
        ),
        "html": lambda p: p.write_text(render_html(f"{name} by {group_by}", table)),
    }
    paths = {}
    for fmt in wanted:
        target = directory / f"{ident}.{fmt}"
        atomic_write(target, writers[fmt])
        paths[fmt] = str(target)
    return {"report_id": ident, "groups": len(table), "rows": len(rows), "paths": paths}
