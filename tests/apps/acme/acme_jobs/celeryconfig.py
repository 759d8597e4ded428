"""ACME's Celery settings, as the team keeps them."""

import os

broker_url = os.environ.get("ACME_BROKER_URL", "redis://localhost:6379/0")
result_backend = os.environ.get("ACME_RESULT_BACKEND", broker_url)
imports = ("acme_jobs.tasks.render", "acme_jobs.tasks.billing")
task_routes = {
    "acme_jobs.tasks.render.*": {"queue": "acme.render"},
    "acme_jobs.tasks.billing.*": {"queue": "acme-billing"},
}
task_acks_late = True
task_reject_on_worker_lost = True
worker_prefetch_multiplier = 4
task_time_limit = 120
task_soft_time_limit = 100
task_serializer = "json"
accept_content = ["json"]
result_expires = 3600
worker_enable_remote_control = os.environ.get("ACME_REMOTE_CONTROL", "1") == "1"
beat_schedule = {
    "nightly-invoices": {
        "task": "acme_jobs.tasks.billing.issue_invoices",
        "schedule": float(os.environ.get("ACME_INVOICE_EVERY", "86400")),
    },
}
