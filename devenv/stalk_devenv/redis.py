"""Real ``redis-server`` and ``redis-sentinel`` processes on loopback."""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import redis

from stalk_devenv.pki import CertificateAuthority, Issued
from stalk_devenv.process import ManagedProcess, free_port, wait_until

SENTINEL_MASTER = "mymaster"


@dataclass(frozen=True)
class ServerTLS:
    """TLS as the chart's Redis runs it: TLS only, no plain port; clients verify the
    server against ``ca`` and need no certificate of their own; replication and the
    Sentinels' links are TLS too."""

    ca: Path
    server: Issued

    def redis_args(self, port: int) -> list[str]:
        return [
            "--port", "0", "--tls-port", str(port),
            "--tls-cert-file", str(self.server.cert),
            "--tls-key-file", str(self.server.key),
            "--tls-ca-cert-file", str(self.ca),
            "--tls-auth-clients", "no",
            "--tls-replication", "yes",
        ]  # fmt: skip

    def sentinel_lines(self, port: int) -> list[str]:
        args = self.redis_args(port)
        return [f"{args[i].lstrip('-')} {args[i + 1]}" for i in range(0, len(args), 2)]

    def client_kwargs(self) -> dict[str, Any]:
        return {"ssl": True, "ssl_ca_certs": str(self.ca)}

    @classmethod
    def issue(cls, directory: Path, hosts: Sequence[str]) -> ServerTLS:
        """A CA of its own and one server certificate naming every address in ``hosts``
        (Sentinel names the master by its announced address)."""
        ca = CertificateAuthority(directory, name="stalk-redis-ca")
        server = ca.issue(
            "redis", common_name="redis", ip_addresses=tuple(hosts), server=True, client=True
        )
        return cls(ca.cert_path, server)


def _require(binary: str) -> str:
    path = shutil.which(binary) or (
        f"/usr/bin/{binary}" if Path(f"/usr/bin/{binary}").exists() else None
    )
    if path is None:
        raise FileNotFoundError(
            f"{binary} not found: install Debian's redis-server and redis-sentinel"
        )
    return path


def redis_available() -> bool:
    try:
        _require("redis-server")
        _require("redis-sentinel")
    except FileNotFoundError:
        return False
    return True


@dataclass
class RedisServer:
    """One Redis server, optionally a replica, with ``requirepass`` when a password is set."""

    workdir: Path
    host: str = "127.0.0.1"
    port: int = field(default_factory=free_port)
    password: str | None = None
    replica_of: RedisServer | None = None
    name: str = "redis"
    appendonly: bool = False
    """Persist as the chart's Redis does (append-only file, fsync every second)."""
    tls: ServerTLS | None = None
    process: ManagedProcess | None = None

    @property
    def url(self) -> str:
        return f"{'rediss' if self.tls else 'redis'}://{self.host}:{self.port}/0"

    def argv(self) -> list[str]:
        listen = self.tls.redis_args(self.port) if self.tls else ["--port", str(self.port)]
        args = [
            _require("redis-server"),
            *listen,
            "--bind",
            self.host,
            "--dir",
            str(self.workdir),
            "--save",
            "",
            "--appendonly",
            "yes" if self.appendonly else "no",
            # Sync replicas at once rather than after Redis' default 5 s pause.
            "--repl-diskless-sync-delay",
            "0",
            "--protected-mode",
            "no",
            "--daemonize",
            "no",
            "--logfile",
            "",
        ]
        if self.password:
            args += ["--requirepass", self.password, "--masterauth", self.password]
        if self.replica_of is not None:
            # Announce the address this replica listens on: the master otherwise reports
            # the source address of the replication link, where nothing listens.
            args += [
                "--replicaof",
                self.replica_of.host,
                str(self.replica_of.port),
                "--replica-announce-ip",
                self.host,
            ]
        return args

    def client(self) -> redis.Redis:
        return redis.Redis(
            host=self.host,
            port=self.port,
            password=self.password,
            socket_timeout=2,
            **(self.tls.client_kwargs() if self.tls else {}),
        )

    def start(self) -> RedisServer:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.process = ManagedProcess(f"{self.name}-{self.port}", self.argv(), self.workdir)
        self.process.start(ready=lambda: bool(self.client().ping()), timeout=15)
        return self

    def stop(self) -> None:
        if self.process:
            self.process.stop(grace=5)

    def restart(self) -> None:
        """Stop (Redis writes what it must on SIGTERM) and start again, same port and dir."""
        self.stop()
        assert self.process is not None
        self.process.start(ready=lambda: bool(self.client().ping()), timeout=15)

    def kill(self) -> None:
        if self.process:
            self.process.kill()


@dataclass
class SentinelGroup:
    """A master, replicas and Sentinels watching them, as the chart deploys it."""

    workdir: Path
    replicas: int = 2
    sentinels: int = 3
    password: str | None = None
    master_name: str = SENTINEL_MASTER
    hosts: Sequence[str] = ("127.0.0.1", "127.0.0.2", "127.0.0.3")
    tls: ServerTLS | None = None
    """TLS everywhere; the server certificate must name every address in ``hosts``."""
    servers: list[RedisServer] = field(default_factory=list)
    sentinel_ports: list[int] = field(default_factory=list)
    sentinel_processes: list[ManagedProcess] = field(default_factory=list)

    @property
    def sentinel_hosts(self) -> list[tuple[str, int]]:
        return [
            (self.hosts[i % len(self.hosts)], port) for i, port in enumerate(self.sentinel_ports)
        ]

    @property
    def broker_url(self) -> str:
        return ";".join(f"sentinel://{h}:{p}/0" for h, p in self.sentinel_hosts)

    def start(self) -> SentinelGroup:
        master = RedisServer(
            self.workdir / "r0",
            host=self.hosts[0],
            password=self.password,
            name="redis-0",
            tls=self.tls,
        ).start()
        self.servers = [master]
        for i in range(1, self.replicas + 1):
            replica = RedisServer(
                self.workdir / f"r{i}",
                host=self.hosts[i % len(self.hosts)],
                password=self.password,
                replica_of=master,
                name=f"redis-{i}",
                tls=self.tls,
            )
            self.servers.append(replica.start())
        for i in range(self.sentinels):
            self._start_sentinel(i, master)
        wait_until(self._sentinels_agree, 30, "sentinels to see the master and each other")
        return self

    def _start_sentinel(self, index: int, master: RedisServer) -> None:
        host = self.hosts[index % len(self.hosts)]
        port = free_port(host)
        directory = self.workdir / f"s{index}"
        directory.mkdir(parents=True, exist_ok=True)
        config = directory / "sentinel.conf"
        lines = [
            *(self.tls.sentinel_lines(port) if self.tls else [f"port {port}"]),
            f"bind {host}",
            "daemonize no",
            f'dir "{directory}"',
            f"sentinel announce-ip {host}",
            f"sentinel monitor {self.master_name} {master.host} {master.port} 2",
            f"sentinel down-after-milliseconds {self.master_name} 1000",
            f"sentinel failover-timeout {self.master_name} 3000",
            f"sentinel parallel-syncs {self.master_name} 1",
        ]
        if self.password:
            lines.append(f"sentinel auth-pass {self.master_name} {self.password}")
        config.write_text("\n".join(lines) + "\n")
        process = ManagedProcess(
            f"sentinel-{index}", [_require("redis-sentinel"), str(config)], directory
        )
        tls = self.tls.client_kwargs() if self.tls else {}
        process.start(
            ready=lambda: bool(redis.Redis(host=host, port=port, socket_timeout=1, **tls).ping()),
            timeout=15,
        )
        self.sentinel_ports.append(port)
        self.sentinel_processes.append(process)

    def sentinel_client(self, index: int = 0) -> redis.Redis:
        host, port = self.sentinel_hosts[index]
        tls = self.tls.client_kwargs() if self.tls else {}
        return redis.Redis(host=host, port=port, socket_timeout=2, decode_responses=True, **tls)

    def _sentinels_agree(self) -> bool:
        for i in range(len(self.sentinel_ports)):
            info = cast(dict[str, Any], self.sentinel_client(i).sentinel_master(self.master_name))
            if int(info["num-other-sentinels"]) < len(self.sentinel_ports) - 1:
                return False
            if int(info["num-slaves"]) < self.replicas:
                return False
        return all(
            server.client().info("replication").get("master_link_status") == "up"
            for server in self.servers[1:]
        )

    def master_address(self) -> tuple[str, int]:
        address = self.sentinel_client().sentinel_get_master_addr_by_name(self.master_name)
        if not isinstance(address, list | tuple):
            raise RuntimeError(f"the sentinels know no master named {self.master_name}")
        host, port = address
        return str(host), int(port)

    def master(self) -> RedisServer:
        address = self.master_address()
        return next(s for s in self.servers if (s.host, s.port) == address)

    def stop(self) -> None:
        for process in self.sentinel_processes:
            process.stop(grace=5)
        for server in self.servers:
            server.stop()
