"""Fixtures with real parts: Redis and Sentinel processes, Celery worker processes.

A test that needs a component this machine lacks is skipped with the reason; the
README's test command installs every component, so in CI nothing is skipped.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from stalk_devenv.redis import RedisServer, SentinelGroup, redis_available
from workers import WorkerFactory

REDIS_PASSWORD = "test-redis-secret"


def pytest_collection_finish(session: pytest.Session) -> None:
    if not session.items:
        pytest.exit("no tests were collected", returncode=5)


@pytest.fixture(scope="session")
def redis_password() -> str:
    return REDIS_PASSWORD


@pytest.fixture(scope="session")
def require_redis() -> None:
    if not redis_available():
        if os.environ.get("CI"):
            pytest.fail("redis-server/redis-sentinel are missing in CI: run hack/setup.sh")
        pytest.skip("redis-server and redis-sentinel are not installed (run hack/setup.sh)")


@pytest.fixture(scope="session")
def redis_server(
    require_redis: None, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path_factory.mktemp("redis"), password=REDIS_PASSWORD).start()
    yield server
    server.stop()


@pytest.fixture
def redis_db(redis_server: RedisServer) -> RedisServer:
    """The session's Redis, emptied for this test."""
    redis_server.client().flushall()
    return redis_server


@pytest.fixture(scope="session")
def sentinel_group(
    require_redis: None, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[SentinelGroup]:
    group = SentinelGroup(tmp_path_factory.mktemp("sentinel"), password=REDIS_PASSWORD).start()
    yield group
    group.stop()


@pytest.fixture
def broker_env(redis_db: RedisServer, tmp_path: Path) -> dict[str, str]:
    """The STALK_* environment of a worker on the test Redis."""
    return {
        "STALK_BROKER_URL": redis_db.url,
        "STALK_REDIS_PASSWORD": REDIS_PASSWORD,
        "STALK_SCRATCH_DIR": str(tmp_path / "scratch"),
        "STALK_REPORTS_DIR": str(tmp_path / "reports"),
        "STALK_SMTP_SECURITY": "none",
    }


@pytest.fixture
def workers(tmp_path: Path) -> Iterator[WorkerFactory]:
    factory = WorkerFactory(tmp_path / "workers", python=Path(sys.executable))
    yield factory
    factory.stop_all()
