from celery import Celery

app = Celery("acme")
app.config_from_object("acme_jobs.celeryconfig")
