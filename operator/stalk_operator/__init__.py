"""The Stalk operator: one autoscaled Celery worker Deployment per TaskQueue.

Layers, outermost first: ``handlers`` (kopf glue) -> ``controller`` (one loop per
TaskQueue: observe, decide, act, report) -> ``scaling`` (the pure decision), ``workload``
(the pure Deployment builder), ``polling`` (one Redis round trip per broker), ``actuation``
(Kubernetes writes), ``reporting`` (status, Events, metrics).
"""

API_GROUP = "stalk.dev"
API_VERSION = "v1alpha1"
TASKQUEUE_PLURAL = "taskqueues"
