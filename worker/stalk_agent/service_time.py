"""How long this worker's tasks run, on average, without timing any task.

Little's law: over a window, tasks in progress = start rate x mean run time, so the mean
run time is the busy slot-seconds of the window divided by the tasks started in it. Both
come from Celery's bookkeeping in the worker's main process (``active_requests`` and the
count of accepted tasks), which is where the agent's reporter ticks; the prefork pool's
children run the tasks and cannot be asked. A task running across the window's edge is
counted where it falls, which evens out over a minute of a steady load.
"""

from __future__ import annotations

import itertools
from collections import deque
from dataclasses import dataclass, field

WINDOW_SECONDS = 60.0


@dataclass
class ServiceTime:
    window: float = WINDOW_SECONDS
    _samples: deque[tuple[float, int, int]] = field(default_factory=deque)
    """(time, tasks running, tasks started since the worker began), oldest first."""

    def sample(self, now: float, running: int, started: int) -> None:
        self._samples.append((now, running, started))
        while len(self._samples) > 2 and now - self._samples[1][0] >= self.window:
            self._samples.popleft()

    def seconds(self) -> float | None:
        """Mean run time over the window, or ``None`` when no task started in it."""
        samples = list(self._samples)
        if len(samples) < 2:
            return None
        started = samples[-1][2] - samples[0][2]
        if started <= 0:
            return None
        busy = sum(
            running * (later - at)
            for (at, running, _), (later, _, _) in itertools.pairwise(samples)
        )
        return busy / started
