"""ACME's background jobs."""

from acme_jobs.celery import app

__all__ = ["app"]
