"""The Stalk operator: one autoscaled Celery worker Deployment per TaskQueue.

Layers, outermost first: ``handlers`` (kopf glue) -> ``fleet`` (every TaskQueue's loop,
the pollers, supervision) -> ``loop`` (one TaskQueue: observe, decide, act, report) ->
``scaling`` (the pure decision), ``workload`` (the pure Deployment builder), ``broker``
(one Redis round trip per broker), ``actuation`` (Kubernetes writes), ``reporting``
(status, Events, metrics), ``faults`` (backoff and what a failure is called).
"""

API_GROUP = "stalk.dev"
API_VERSION = "v1alpha1"
TASKQUEUE_PLURAL = "taskqueues"
