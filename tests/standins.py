"""Stand-ins for the Kubernetes API and a broker poller, for unit tests of the loop.

They record what the loop asks of them (its contract); the e2e tests run the same loop
against a real API server, real Redis and real workers.
"""

from __future__ import annotations

from stalk_broker.worker_state import WorkerLoad
from stalk_operator.broker import SecretUnavailableError


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


class FakeKubernetes:
    """Records every write; ``fail`` makes the next writes raise."""

    def __init__(self) -> None:
        self.calls: list[tuple] = []
        self.fail: list[BaseException] = []
        self.secrets: dict[tuple[str, str], str] = {}

    def _write(self, *call) -> None:
        if self.fail:
            raise self.fail.pop(0)
        self.calls.append(call)

    async def apply_deployment(self, manifest, initial_replicas):
        self._write("apply", manifest["metadata"]["name"], initial_replicas)

    async def set_replicas(self, namespace, name, replicas):
        self._write("replicas", replicas)

    async def mark_deletion_costs(self, namespace, selector, workers):
        self._write("costs", dict(workers))

    async def patch_status(self, namespace, name, status):
        self._write("status", status)

    async def secret(self, namespace, ref):
        if ref is None:
            return None
        if (ref.name, ref.key) not in self.secrets:
            raise SecretUnavailableError(f"Secret {namespace}/{ref.name} not found")
        return self.secrets[(ref.name, ref.key)]

    def of(self, kind: str) -> list[tuple]:
        return [c for c in self.calls if c[0] == kind]


class FakePoller:
    interval = 1.0

    def __init__(self) -> None:
        self.loads: dict[str, WorkerLoad] = {}

    async def worker_loads(self, pool):
        return self.loads


class FakePollers:
    def __init__(self) -> None:
        self.poller = FakePoller()
        self.subscribed: list[tuple] = []

    async def subscribe(self, endpoint, subscription):
        self.subscribed.append((endpoint, subscription))
        return self.poller

    async def unsubscribe(self, pool):
        pass
