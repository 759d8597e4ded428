"""Which queue each task goes to: one table, by the module that defines the task.

Routing by module keeps a pool's workload homogeneous (mail is I/O-bound and
rate-limited, analysis is CPU-bound), so each TaskQueue can be sized for one kind of work.
Tasks from modules not in the table go to ``default``.
"""

from __future__ import annotations

from typing import Any

DEFAULT_QUEUE = "default"

QUEUE_BY_MODULE: dict[str, str] = {
    "stalk_worker.tasks.email": "email",
    "stalk_worker.tasks.webhooks": "high_priority",
    "stalk_worker.tasks.files": "file_processing",
    "stalk_worker.tasks.analysis": "data_analysis",
    "stalk_worker.tasks.reports": "reports",
    "stalk_worker.tasks.maintenance": "maintenance",
    "stalk_worker.tasks.canvas": DEFAULT_QUEUE,
}

ALL_QUEUES: tuple[str, ...] = tuple(dict.fromkeys([DEFAULT_QUEUE, *QUEUE_BY_MODULE.values()]))


def queue_for(task_name: str) -> str:
    """The queue of ``task_name`` (``module.function``), by its longest module prefix."""
    module = task_name
    while "." in module:
        module = module.rsplit(".", 1)[0]
        if module in QUEUE_BY_MODULE:
            return QUEUE_BY_MODULE[module]
    return DEFAULT_QUEUE


def route_task(name: str, *args: Any, **kwargs: Any) -> dict[str, str]:
    """Celery router. Celery merges the call's own options over this, so an explicit
    ``queue=`` on ``apply_async`` still wins."""
    return {"queue": queue_for(name)}
