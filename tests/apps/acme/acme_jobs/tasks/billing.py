import time

from acme_jobs.celery import app


@app.task
def charge(customer: str, cents: int) -> str:
    return f"charged {customer} {cents}"


@app.task
def issue_invoices() -> float:
    return time.time()
