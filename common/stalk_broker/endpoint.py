"""Where a broker is, and how to open a client to it through Sentinel or directly.

Celery and redis-py spell the same broker differently: Celery wants one URL (a
``;``-separated list of ``sentinel://`` URLs plus a ``master_name`` transport option),
redis-py wants a ``Sentinel`` object and ``master_for``. One parsed ``BrokerEndpoint``
serves both, and keeps passwords out of its ``repr`` so that it can be logged.

TLS is one switch for every link: to the Redis server and, behind Sentinel, to the
Sentinels as well (a ``sentinel://`` URL cannot say ``rediss``, so it is told). The
server is always verified, against ``ca_file`` or the system's CAs, host name included:
Sentinel names the master as it was announced (the chart announces DNS names), and the
certificate must carry that name. Celery, kombu and redbeat each take the options in
their own key (``broker_use_ssl``, ``redis_backend_use_ssl``, ``redbeat_redis_use_ssl``,
and ``sentinel_kwargs`` for the Sentinel links); :meth:`BrokerEndpoint.celery_ssl` and
:meth:`BrokerEndpoint.celery_transport_options` give them.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass, field, replace
from typing import Any, cast
from urllib.parse import quote, unquote, urlsplit

import redis
import redis.asyncio
import redis.asyncio.sentinel
import redis.sentinel

CELERY_SOCKET_OPTIONS: dict[str, Any] = {
    "socket_timeout": 10.0,
    "socket_connect_timeout": 10.0,
    "socket_keepalive": True,
}
"""Socket options for a Celery app's Redis connections (broker and result backend). In
Kubernetes a Redis pod's address can vanish without closing the connection (a deleted
pod, a failover), and kombu's default waits forever: a publish on such a connection never
returns (measured: a producer stalled for good after a master pod was deleted, in the
broker's publish and then in the result backend's pub/sub subscribe). With a timeout it
fails and the client reconnects through the Sentinels. 10 s is far above any reply
(BRPOP waits 1 s server-side) and far below forever."""

_DIRECT_SCHEMES = ("redis", "rediss")
_SENTINEL_SCHEME = "sentinel"


@dataclass(frozen=True)
class BrokerEndpoint:
    """A Redis broker: either one server, or a master found through Sentinels."""

    hosts: tuple[tuple[str, int], ...]
    """``(host, port)`` of the Redis server, or of every Sentinel."""

    sentinel: bool = False
    """Whether ``hosts`` are Sentinels to ask for the master."""

    master_name: str | None = None
    """The Sentinel master group name (``mymaster`` in most set-ups)."""

    db: int = 0
    """The Redis database number."""

    tls: bool = False
    """TLS to the Redis server and to the Sentinels (``rediss://``, or told so)."""

    ca_file: str | None = None
    """PEM file of the CAs that sign the server certificates; ``None``: the system's."""

    ca_data: str | None = None
    """The same CAs as PEM text, for a process that reads them from a Secret (the
    operator) rather than a mounted file."""

    password: str | None = field(default=None, repr=False)
    """The password of the Redis server (``requirepass``)."""

    sentinel_password: str | None = field(default=None, repr=False)
    """The password of the Sentinels themselves, when they have one."""

    username: str | None = None
    """An ACL user name, when the server uses ACLs."""

    def __post_init__(self) -> None:
        if not self.hosts:
            raise ValueError("a broker needs at least one host")
        if self.sentinel and not self.master_name:
            raise ValueError("a Sentinel broker needs a master name")

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        master_name: str | None = None,
        password: str | None = None,
        sentinel_password: str | None = None,
        db: int | None = None,
        tls: bool = False,
        ca_file: str | None = None,
        ca_data: str | None = None,
    ) -> BrokerEndpoint:
        """Parse a Celery broker URL; explicit arguments win over what the URL says
        (``tls`` turns TLS on; ``rediss://`` needs no telling)."""
        parts = [p.strip() for p in url.split(";") if p.strip()]
        if not parts:
            raise ValueError("empty broker URL")
        parsed = [urlsplit(p) for p in parts]
        schemes = {p.scheme for p in parsed}
        if len(schemes) != 1:
            raise ValueError(f"mixed schemes in broker URL: {sorted(schemes)}")
        scheme = schemes.pop()
        if scheme not in (*_DIRECT_SCHEMES, _SENTINEL_SCHEME):
            raise ValueError(
                f"unsupported broker scheme {scheme!r}: use redis://, rediss:// or sentinel://"
            )
        if scheme in _DIRECT_SCHEMES and len(parsed) > 1:
            raise ValueError("only sentinel:// URLs may list several hosts")
        first = parsed[0]
        default_port = 26379 if scheme == _SENTINEL_SCHEME else 6379
        hosts = tuple((p.hostname or "localhost", p.port or default_port) for p in parsed)
        url_db = next((int(p.path.strip("/")) for p in parsed if p.path.strip("/")), 0)
        return cls(
            hosts=hosts,
            sentinel=scheme == _SENTINEL_SCHEME,
            master_name=master_name,
            db=url_db if db is None else db,
            tls=tls or scheme == "rediss",
            ca_file=ca_file,
            ca_data=ca_data,
            password=password if password is not None else _unquoted(first.password),
            sentinel_password=sentinel_password,
            username=_unquoted(first.username),
        )

    def with_password(self, password: str | None) -> BrokerEndpoint:
        return replace(self, password=password)

    @property
    def identity(self) -> tuple[Any, ...]:
        """What makes two endpoints the same broker, passwords aside."""
        return (
            self.hosts,
            self.sentinel,
            self.master_name,
            self.db,
            self.tls,
            self.ca_file,
            self.ca_data,
            self.username,
        )

    def describe(self) -> str:
        """A human-readable location with no secrets, for logs, status and Events."""
        hosts = ",".join(f"{h}:{p}" for h, p in self.hosts)
        if self.sentinel:
            tls = ", TLS" if self.tls else ""
            return f"sentinel://{hosts}/{self.db} (master {self.master_name}{tls})"
        return f"{'rediss' if self.tls else 'redis'}://{hosts}/{self.db}"

    def celery_url(self) -> str:
        """The URL Celery's ``broker_url``/``result_backend`` take, secrets included."""
        auth = ""
        if self.password is not None or self.username:
            auth = f"{quote(self.username or '', safe='')}:{quote(self.password or '', safe='')}@"
        scheme = _SENTINEL_SCHEME if self.sentinel else ("rediss" if self.tls else "redis")
        return ";".join(f"{scheme}://{auth}{host}:{port}/{self.db}" for host, port in self.hosts)

    def celery_transport_options(self) -> dict[str, Any]:
        """The Sentinel part of Celery's transport options (empty for a direct broker)."""
        if not self.sentinel:
            return {}
        # Always given: kombu would copy the socket options to the Sentinel links only
        # when none are, and Celery's result backend never does (they would wait forever).
        return {
            "master_name": self.master_name,
            "sentinel_kwargs": self.sentinel_link_kwargs(CELERY_SOCKET_OPTIONS["socket_timeout"]),
        }

    def sentinel_link_kwargs(self, socket_timeout: float) -> dict[str, Any]:
        """redis-py arguments of the links to the Sentinels: a timeout, their password
        and TLS. redis-py gives the links the client's socket options only when no
        ``sentinel_kwargs`` are given, so these must carry their own timeout."""
        kwargs: dict[str, Any] = {
            "socket_timeout": socket_timeout,
            "socket_connect_timeout": socket_timeout,
            **self.ssl_kwargs(),
        }
        if self.sentinel_password is not None:
            kwargs["password"] = self.sentinel_password
        return kwargs

    def ssl_kwargs(self) -> dict[str, Any]:
        """redis-py's TLS arguments: server verified, host name included."""
        if not self.tls:
            return {}
        return {
            "ssl": True,
            "ssl_cert_reqs": "required",
            # redis-py checks the host name by default only from 6.0; apps bring older.
            "ssl_check_hostname": True,
            "ssl_ca_certs": self.ca_file,
            "ssl_ca_data": self.ca_data,
        }

    def celery_ssl(self) -> dict[str, Any] | None:
        """What Celery's ``broker_use_ssl``, ``redis_backend_use_ssl`` and redbeat's
        ``redbeat_redis_use_ssl`` take; ``None`` without TLS."""
        if not self.tls:
            return None
        options: dict[str, Any] = {"ssl_cert_reqs": ssl.CERT_REQUIRED, "ssl_check_hostname": True}
        if self.ca_file:
            options["ssl_ca_certs"] = self.ca_file
        if self.ca_data:
            options["ssl_ca_data"] = self.ca_data
        return options


def _unquoted(value: str | None) -> str | None:
    return unquote(value) if value else None


def _client_kwargs(endpoint: BrokerEndpoint, socket_timeout: float) -> dict[str, Any]:
    return {
        "db": endpoint.db,
        "password": endpoint.password,
        "username": endpoint.username,
        "socket_timeout": socket_timeout,
        "socket_connect_timeout": socket_timeout,
        **endpoint.ssl_kwargs(),
    }


def connect(endpoint: BrokerEndpoint, *, socket_timeout: float = 2.0) -> redis.Redis:
    """A blocking client to the broker's current master; it follows Sentinel failovers."""
    kwargs = _client_kwargs(endpoint, socket_timeout)
    if not endpoint.sentinel:
        host, port = endpoint.hosts[0]
        return redis.Redis(host=host, port=port, **kwargs)
    sentinels = redis.sentinel.Sentinel(  # type: ignore[no-untyped-call,unused-ignore]
        list(endpoint.hosts), sentinel_kwargs=endpoint.sentinel_link_kwargs(socket_timeout)
    )
    assert endpoint.master_name is not None
    master = sentinels.master_for(endpoint.master_name, **kwargs)  # type: ignore[no-untyped-call,unused-ignore]
    return cast(redis.Redis, master)


def connect_async(endpoint: BrokerEndpoint, *, socket_timeout: float = 2.0) -> redis.asyncio.Redis:
    """The asyncio twin of :func:`connect`, for the operator's event loop."""
    kwargs = _client_kwargs(endpoint, socket_timeout)
    if not endpoint.sentinel:
        host, port = endpoint.hosts[0]
        return redis.asyncio.Redis(host=host, port=port, **kwargs)
    sentinels = redis.asyncio.sentinel.Sentinel(  # type: ignore[no-untyped-call,unused-ignore]
        list(endpoint.hosts), sentinel_kwargs=endpoint.sentinel_link_kwargs(socket_timeout)
    )
    assert endpoint.master_name is not None
    return cast(redis.asyncio.Redis, sentinels.master_for(endpoint.master_name, **kwargs))
