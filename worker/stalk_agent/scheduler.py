"""``celery -A <any app> beat -S stalk_agent.scheduler.Scheduler``: any app's beat with
the broker its Stalk release declares, the schedule from the chart's values besides the
app's own, and a celery-redbeat lock so that a second beat never fires an entry twice.

Everything is applied when Celery builds the scheduler, before beat connects. Needs
celery-redbeat: in the image, or injected with the agent (``install --beat``).
"""

from __future__ import annotations

from typing import Any

from celery import Celery
from redbeat import RedBeatScheduler

from stalk_agent.beat import BeatSettings
from stalk_agent.configure import apply_broker
from stalk_agent.settings import AgentSettings


class Scheduler(RedBeatScheduler):  # type: ignore[misc]
    def __init__(self, app: Celery, *args: Any, **kwargs: Any) -> None:
        configure(app)
        super().__init__(app, *args, **kwargs)


def configure(app: Celery) -> None:
    apply_broker(app, AgentSettings.from_environ())
    beat = BeatSettings.from_environ().beat_config()
    schedule = {**(app.conf.beat_schedule or {}), **beat.pop("beat_schedule")}
    app.conf.update(beat, beat_schedule=schedule)
