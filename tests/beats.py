"""Beat as the chart runs it: its command and environment, rendered from the chart."""

from __future__ import annotations

from chart import find, helm_binary, render


def chart_beat(periods: dict[str, float], max_loop: float) -> tuple[list[str], dict[str, str]]:
    """The chart's beat command and literal environment, with one schedule entry per
    period: ``stalk_worker.tasks.canvas.add`` sent to a queue named like the entry."""
    args = ["--set", f"beat.maxLoopIntervalSeconds={max_loop}"]
    for name, period in periods.items():
        args += [
            "--set",
            f"beat.schedule.{name}.task=stalk_worker.tasks.canvas.add",
            "--set",
            f"beat.schedule.{name}.every={period}",
            "--set",
            f"beat.schedule.{name}.queue={name}",
            "--set-json",
            f"beat.schedule.{name}.args=[1,{period}]",
        ]
    docs = render(helm_binary(), *args)
    container = find(docs, "Deployment", "-beat")["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e["value"] for e in container["env"] if "value" in e}
    env["STALK_BEAT_SCHEDULE"] = find(docs, "ConfigMap", "-beat-schedule")["data"]["schedule.json"]
    return container["command"], env
