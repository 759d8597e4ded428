"""The broker a Stalk process is told to use, as environment variables.

The operator sets these on every worker pod from its TaskQueue's ``spec.broker`` (the
chart sets them on beat and Flower); Stalk's own worker app and the agent that any
team's app runs with both read them here, so the broker a TaskQueue declares is the one
every worker of it consumes from, whatever the app's own configuration says.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from stalk_config import Secret, env, from_env, reveal

from stalk_broker.endpoint import BrokerEndpoint
from stalk_broker.keys import DEFAULT_PRIORITY_STEPS

T = TypeVar("T", bound="BrokerSettings")


@dataclass(frozen=True)
class BrokerSettings:
    broker_url: str = env(
        "STALK_BROKER_URL",
        "redis://localhost:6379/0",
        "Broker: `redis://host:6379/0`, or Sentinels as "
        "`sentinel://h1:26379;sentinel://h2:26379` (with `STALK_SENTINEL_MASTER`).",
    )
    redis_password: Secret | None = env(
        "STALK_REDIS_PASSWORD",
        None,
        "Redis password; kept out of URLs so it can come from a Secret.",
    )
    sentinel_master: str = env("STALK_SENTINEL_MASTER", "mymaster", "Sentinel master group name.")
    sentinel_password: Secret | None = env(
        "STALK_SENTINEL_PASSWORD",
        None,
        "Password of the Sentinels themselves, if they have one.",
    )
    redis_tls: bool = env(
        "STALK_REDIS_TLS",
        False,
        "TLS to Redis and its Sentinels, the server verified (`rediss://` implies it).",
    )
    redis_ca_file: str | None = env(
        "STALK_REDIS_CA_FILE",
        None,
        "PEM file of the CAs that sign Redis' certificates; unset: the system's CAs.",
    )
    global_keyprefix: str = env(
        "STALK_GLOBAL_KEYPREFIX", "", "kombu `global_keyprefix`: prefix for every Redis key."
    )
    priority_steps: tuple[int, ...] = env(
        "STALK_PRIORITY_STEPS",
        DEFAULT_PRIORITY_STEPS,
        "kombu `priority_steps`: one Redis list per step (comma-separated).",
    )

    @classmethod
    def from_environ(cls: type[T], environ: Mapping[str, str] | None = None) -> T:
        return from_env(cls, os.environ if environ is None else environ)

    def broker(self) -> BrokerEndpoint:
        return self.endpoint(self.broker_url)

    def endpoint(self, url: str) -> BrokerEndpoint:
        endpoint = BrokerEndpoint.from_url(
            url,
            master_name=self.sentinel_master if url.startswith("sentinel://") else None,
            sentinel_password=reveal(self.sentinel_password),
            tls=self.redis_tls,
            ca_file=self.redis_ca_file,
        )
        if self.redis_password is not None:
            endpoint = endpoint.with_password(self.redis_password.reveal())
        return endpoint

    def transport_options(self) -> dict[str, Any]:
        """kombu's transport options that shape where messages live (not timeouts)."""
        options: dict[str, Any] = {
            "priority_steps": list(self.priority_steps),
            **self.broker().celery_transport_options(),
        }
        if self.global_keyprefix:
            options["global_keyprefix"] = self.global_keyprefix
        return options
