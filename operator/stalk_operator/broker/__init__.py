"""Reading brokers: one poller per broker for every TaskQueue on it, and the credentials
each TaskQueue's broker is read with."""

from stalk_operator.broker.credentials import SecretUnavailableError, resolve_endpoint
from stalk_operator.broker.observation import PoolObservation, Snapshot, Subscription
from stalk_operator.broker.poller import BrokerPoller, describe_error
from stalk_operator.broker.registry import PollerRegistry
from stalk_operator.broker.subscriber import PoolSubscriber

__all__ = [
    "BrokerPoller",
    "PollerRegistry",
    "PoolObservation",
    "PoolSubscriber",
    "SecretUnavailableError",
    "Snapshot",
    "Subscription",
    "describe_error",
    "resolve_endpoint",
]
