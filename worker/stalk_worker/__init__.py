"""The Stalk worker: one Celery app, configured from the environment, carrying every
task module. Import :mod:`stalk_worker.app` for the app itself."""
