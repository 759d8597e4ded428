"""What the Stalk operator and the Stalk worker agree on about Redis.

Kept free of Celery and Kubernetes imports so that both images can depend on it: the
names of kombu's queue lists, the record a worker keeps about its own load, and how to
reach a broker that may sit behind Sentinel.
"""

from stalk_broker.endpoint import BrokerEndpoint, connect, connect_async
from stalk_broker.keys import DEFAULT_PRIORITY_STEPS, PRIORITY_SEPARATOR, KeyLayout
from stalk_broker.worker_state import WorkerLoad, worker_state_key

__all__ = [
    "DEFAULT_PRIORITY_STEPS",
    "PRIORITY_SEPARATOR",
    "BrokerEndpoint",
    "KeyLayout",
    "WorkerLoad",
    "connect",
    "connect_async",
    "worker_state_key",
]
