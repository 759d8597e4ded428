"""The settings this worker process runs with, read from the environment once."""

from __future__ import annotations

from functools import lru_cache

from stalk_worker.settings import WorkerSettings


@lru_cache(maxsize=1)
def settings() -> WorkerSettings:
    return WorkerSettings.from_environ()
