"""Small arithmetic tasks and the canvas patterns users copy: chain, group, chord.

from stalk_worker.tasks.canvas import example_chord
example_chord(10).apply_async().get()   # sum of i*i for i < 10 == 285
"""

from __future__ import annotations

from celery import chain, chord, group, shared_task
from celery.canvas import Signature


@shared_task(name="stalk_worker.tasks.canvas.add")
def add(x: float, y: float) -> float:
    return x + y


@shared_task(name="stalk_worker.tasks.canvas.multiply")
def multiply(x: float, y: float) -> float:
    return x * y


@shared_task(name="stalk_worker.tasks.canvas.total")
def total(numbers: list[float]) -> float:
    return sum(numbers)


@shared_task(name="stalk_worker.tasks.canvas.sleep", soft_time_limit=3600, time_limit=3660)
def sleep(seconds: float, tag: str = "") -> dict[str, object]:
    """Hold a worker process for ``seconds``: the load that autoscaling tests and demos use."""
    import time

    from celery import current_task

    started = time.time()
    time.sleep(seconds)
    return {
        "tag": tag,
        "seconds": seconds,
        "started": started,
        "finished": time.time(),
        "hostname": current_task.request.hostname,
    }


def example_chain(x: float, y: float, factor: float) -> Signature:
    """(x + y) * factor: each step's result is the next one's first argument."""
    return chain(add.s(x, y), multiply.s(factor))


def example_group(pairs: list[tuple[float, float]]) -> Signature:
    """Every pair added in parallel; the result is the list of sums."""
    return group(add.s(x, y) for x, y in pairs)


def example_chord(n: int) -> Signature:
    """Squares of 0..n-1 in parallel, then their total in one callback."""
    return chord((multiply.s(i, i) for i in range(n)), total.s())
