"""Real ``celery worker`` processes with the Stalk agent, and a client app to send tasks."""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

import redis
from celery import Celery
from kube import wait_for
from stalk_devenv.process import ManagedProcess, free_port
from stalk_devenv.redis import RedisServer


class Worker:
    def __init__(self, process: ManagedProcess, health_port: int, hostname: str) -> None:
        self.process = process
        self.health_port = health_port
        self.hostname = hostname

    def log(self) -> str:
        return self.process.log_path.read_text(errors="replace")

    def health(self) -> tuple[int, str]:
        """The agent's ``/healthz``: status code and body."""
        url = f"http://127.0.0.1:{self.health_port}/healthz"
        try:
            with urllib.request.urlopen(url, timeout=2) as reply:
                return reply.status, reply.read().decode()
        except urllib.error.HTTPError as refused:
            return refused.code, refused.read().decode()

    def beating(self) -> bool:
        """Whether the agent answers and the worker's event loop has beaten."""
        try:
            code, body = self.health()
        except OSError:
            return False
        return code == 200 and "last beat" in body

    def terminate(self, grace: float = 30) -> int | None:
        """SIGTERM and wait, as the kubelet does on pod deletion."""
        return self.process.stop(grace=grace)


class WorkerFactory:
    """``celery worker`` processes with the Stalk agent attached, as the operator runs
    them: Stalk's own app by default, or a team's app from its own virtualenv."""

    def __init__(self, root: Path, python: Path) -> None:
        self.root = root
        self.python = python
        self.started: list[Worker] = []

    def start(
        self,
        env: Mapping[str, str],
        queues: Sequence[str] = ("default",),
        concurrency: int = 2,
        hostname: str | None = None,
        extra_args: Sequence[str] = (),
        pythonpath: Sequence[Path] = (),
        app: str = "stalk_worker.app",
        python: Path | None = None,
        no_agent: bool = False,
    ) -> Worker:
        index = len(self.started)
        name = hostname or f"worker-{index}"
        health_port = free_port()
        full_env = {
            **os.environ,
            **env,
            "STALK_AGENT_HEALTH_PORT": str(health_port),
        }
        if pythonpath:
            full_env["PYTHONPATH"] = os.pathsep.join(
                [*map(str, pythonpath), full_env.get("PYTHONPATH", "")]
            )
        argv = [
            str(python or self.python),
            "-m",
            "celery",
            "-A",
            app,
            "worker",
            "-Q",
            ",".join(queues),
            "-c",
            str(concurrency),
            "-n",
            name,
            "--without-gossip",
            "--without-mingle",
            "-l",
            "INFO",
            *([] if no_agent else ["--include", "stalk_agent.boot"]),
            *extra_args,
        ]
        process = ManagedProcess(name, argv, self.root, env=full_env)
        worker = Worker(process, health_port, name)
        ready = (lambda: " ready." in worker.log()) if no_agent else worker.beating
        process.start(ready=ready, timeout=60)
        self.started.append(worker)
        return worker

    def stop_all(self) -> None:
        for worker in self.started:
            worker.process.stop(grace=10)


def client_env(server: RedisServer) -> dict[str, str]:
    """The STALK_* environment of a client of a test Redis server."""
    return {"STALK_BROKER_URL": server.url, "STALK_REDIS_PASSWORD": server.password or ""}


@contextmanager
def client_app(env: Mapping[str, str]) -> Iterator[Celery]:
    """A Celery app configured like the workers, for sending tasks and reading results."""
    from stalk_worker import runtime
    from stalk_worker.app import create_app

    saved = {key: os.environ.get(key) for key in env}
    os.environ.update(env)
    runtime.settings.cache_clear()
    try:
        app = create_app()
        app.set_current()
        yield app
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        runtime.settings.cache_clear()


__all__ = ["Worker", "WorkerFactory", "client_app", "client_env", "wait_for"]


@contextmanager
def running_flower(
    env: Mapping[str, str], logs: Path, password: str
) -> Iterator[tuple[ManagedProcess, int]]:
    """Flower as the chart runs it (``celery -A stalk_worker.app flower``, basic auth
    ``admin``) on a free loopback port: the process and its port, stopped on exit."""
    import sys

    from stalk_devenv.controlplane import http_ok

    port = free_port()
    flower = ManagedProcess(
        "flower",
        [sys.executable, "-m", "celery", "-A", "stalk_worker.app", "flower",
         f"--port={port}", "--address=127.0.0.1"],
        logs,
        env={**os.environ, **env, "FLOWER_BASIC_AUTH": f"admin:{password}"},
    )  # fmt: skip
    flower.start(ready=lambda: http_ok(f"http://127.0.0.1:{port}/healthcheck"), timeout=60)
    try:
        yield flower, port
    finally:
        flower.stop(grace=5)


def unacknowledged_task_ids(client: redis.Redis) -> set[str]:
    """Task ids in kombu's unacknowledged set: taken by a worker that went away before
    acknowledging, handed out again once the visibility timeout passes."""
    held = set()
    for raw in client.hvals("unacked"):
        message = json.loads(raw)[0]
        held.add(str(message.get("headers", {}).get("id", "")))
    return held
