"""Run by test_bench_kube_clients in a fresh process: import one Kubernetes client, then
patch the status of every TaskQueue of a namespace as the operator does, and print the
import time, total time and resident memory as JSON.

python tests/kube_client_probe.py lightkube|kubernetes <kubeconfig> <namespace>
"""

from __future__ import annotations

import asyncio
import json
import re
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

CONCURRENCY = 16


def rss_mib() -> float:
    status = Path("/proc/self/status").read_text()
    return int(re.search(r"VmRSS:\s+(\d+)", status).group(1)) / 1024  # type: ignore[union-attr]


def with_lightkube(kubeconfig: str, namespace: str) -> tuple[float, int]:
    started = time.perf_counter()
    from lightkube import AsyncClient, KubeConfig
    from lightkube.generic_resource import create_namespaced_resource
    from lightkube.types import PatchType

    imported = time.perf_counter() - started
    taskqueue = create_namespaced_resource("stalk.dev", "v1alpha1", "TaskQueue", "taskqueues")

    async def run() -> int:
        client = AsyncClient(KubeConfig.from_file(kubeconfig), field_manager="probe")
        names = [tq.metadata.name async for tq in client.list(taskqueue, namespace=namespace)]
        limit = asyncio.Semaphore(CONCURRENCY)

        async def patch(name: str) -> None:
            async with limit:
                await client.patch(
                    taskqueue.Status,
                    name,
                    namespace=namespace,
                    obj={"status": {"backlog": 1}},
                    patch_type=PatchType.MERGE,
                )

        await asyncio.gather(*(patch(n) for n in names))
        return len(names)

    return imported, asyncio.run(run())


def with_kubernetes(kubeconfig: str, namespace: str) -> tuple[float, int]:
    started = time.perf_counter()
    from kubernetes import client, config

    imported = time.perf_counter() - started
    api = client.CustomObjectsApi(config.new_client_from_config(kubeconfig))
    found = api.list_namespaced_custom_object("stalk.dev", "v1alpha1", namespace, "taskqueues")
    names = [item["metadata"]["name"] for item in found["items"]]

    def patch(name: str) -> None:
        api.patch_namespaced_custom_object_status(
            "stalk.dev", "v1alpha1", namespace, "taskqueues", name, {"status": {"backlog": 1}}
        )

    with ThreadPoolExecutor(CONCURRENCY) as pool:
        list(pool.map(patch, names))
    return imported, len(names)


def main() -> None:
    which, kubeconfig, namespace = sys.argv[1:4]
    baseline = rss_mib()
    started = time.perf_counter()
    run = with_lightkube if which == "lightkube" else with_kubernetes
    imported, count = run(kubeconfig, namespace)
    print(
        json.dumps(
            {
                "client": which,
                "import_seconds": imported,
                "seconds": time.perf_counter() - started,
                "patched": count,
                "rss_mib": rss_mib(),
                "rss_added_mib": rss_mib() - baseline,
            }
        )
    )


if __name__ == "__main__":
    main()
