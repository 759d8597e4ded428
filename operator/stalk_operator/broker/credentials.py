"""From a TaskQueue's broker spec to an endpoint with its passwords.

The operator's default broker takes its passwords and CAs from the operator's own
settings (the chart's Secrets, mounted into the operator). A broker a TaskQueue names
takes them from the Secrets it references, in its own namespace, read at subscription
time only.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from stalk_broker import BrokerEndpoint
from stalk_config import reveal

from stalk_operator.model import BrokerSpec, SecretKey
from stalk_operator.settings import OperatorSettings

SecretReader = Callable[[str, SecretKey | None], Awaitable[str | None]]
"""``(namespace, reference) -> value``; raises :class:`SecretUnavailableError`."""


class SecretUnavailableError(Exception):
    """A referenced Secret or key is missing; the message names it (never its value)."""


async def resolve_endpoint(
    broker: BrokerSpec, namespace: str, settings: OperatorSettings, read_secret: SecretReader
) -> BrokerEndpoint:
    if broker.is_default:
        return broker.endpoint(
            reveal(settings.default_redis_password),
            reveal(settings.default_sentinel_password),
            ca_file=settings.default_redis_ca_file,
        )
    return broker.endpoint(
        await read_secret(namespace, broker.password),
        await read_secret(namespace, broker.sentinel_password),
        ca_data=await read_secret(namespace, broker.ca),
    )
