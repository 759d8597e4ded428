"""The Celery app every Stalk worker, beat and Flower process loads (``-A stalk_worker.app``).

Task modules are the built-in ones, every module registered under the ``stalk.tasks``
entry point group (how a company ships its own tasks on our image), and any named in
``STALK_TASK_MODULES``. Load records and ``/healthz`` come from the Stalk agent
(:mod:`stalk_agent`), which the operator attaches to this app as to any other.
"""

from __future__ import annotations

from importlib.metadata import entry_points

from celery import Celery

from stalk_worker.config import BUILTIN_TASK_MODULES, celery_config
from stalk_worker.runtime import settings

ENTRY_POINT_GROUP = "stalk.tasks"


def task_modules() -> list[str]:
    """Every module whose tasks this worker registers, in import order, without repeats."""
    registered = [ep.module for ep in entry_points(group=ENTRY_POINT_GROUP)]
    return list(dict.fromkeys([*BUILTIN_TASK_MODULES, *registered, *settings().task_modules]))


def create_app() -> Celery:
    app = Celery("stalk", include=task_modules())
    app.conf.update(celery_config(settings()))
    return app


app = create_app()
