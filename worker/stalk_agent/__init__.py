"""The Stalk agent: what any Celery app's workers need to be autoscaled well by Stalk.

Loaded into a team's own worker, unchanged, by one option the operator adds to its
command line: ``celery -A <their app> worker ... --include stalk_agent.boot``. In the
worker's main process, before the worker is built, it:

* applies the broker the TaskQueue declares (URL with its db, Sentinel master and
  passwords, ``global_keyprefix``, priority steps, a visibility timeout longer than the
  time limit), so the pool consumes where its depth is read;
* adds a consumer step that publishes the worker's load (running and prefetched tasks)
  for the operator, about once a second from the worker's event loop;
* serves ``/healthz`` on a small HTTP port, answered from the same event loop's
  heartbeat, so a liveness probe works without anything in the team's image.

It depends on Celery and redis-py only (the app already has both) and on Stalk's two
small pure-Python packages, ``stalk_broker`` and ``stalk_config``. The operator can copy
all three into the pod from Stalk's worker image (``spec.worker.agent: Injected``), so
the team's image needs no change at all. docs/any-celery-app.md says why this mechanism.
"""
