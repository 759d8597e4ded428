"""Real ``celery worker`` processes of the Stalk app, and a client app to send them tasks."""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

from celery import Celery
from kube import wait_for
from stalk_devenv.process import ManagedProcess
from stalk_devenv.redis import RedisServer


class Worker:
    def __init__(self, process: ManagedProcess, heartbeat: Path, hostname: str) -> None:
        self.process = process
        self.heartbeat = heartbeat
        self.hostname = hostname

    def log(self) -> str:
        return self.process.log_path.read_text(errors="replace")

    def terminate(self, grace: float = 30) -> int | None:
        """SIGTERM and wait, as the kubelet does on pod deletion."""
        return self.process.stop(grace=grace)


class WorkerFactory:
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
    ) -> Worker:
        index = len(self.started)
        name = hostname or f"worker-{index}"
        heartbeat = self.root / f"{name}.alive"
        full_env = {
            **os.environ,
            **env,
            "STALK_HEARTBEAT_FILE": str(heartbeat),
            "STALK_HEARTBEAT_INTERVAL_SECONDS": "0.5",
        }
        if pythonpath:
            full_env["PYTHONPATH"] = os.pathsep.join(
                [*map(str, pythonpath), full_env.get("PYTHONPATH", "")]
            )
        argv = [
            str(self.python),
            "-m",
            "celery",
            "-A",
            "stalk_worker.app",
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
            *extra_args,
        ]
        process = ManagedProcess(name, argv, self.root, env=full_env)
        process.start(ready=heartbeat.exists, timeout=60)
        worker = Worker(process, heartbeat, name)
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
