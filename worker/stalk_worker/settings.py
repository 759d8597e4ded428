"""Everything a Stalk worker can be told, as environment variables with defaults.

The operator and the chart configure workers only through these variables. Run
``python -m stalk_worker.settings`` to print the reference table the README embeds.
"""

from __future__ import annotations

from dataclasses import dataclass

from stalk_agent.beat import BeatSettings
from stalk_broker import BrokerEndpoint
from stalk_config import Secret, SettingsError, env, markdown_table


@dataclass(frozen=True)
class WorkerSettings(BeatSettings):
    """The worker's configuration; see the README table for each variable."""

    result_backend_url: str = env(
        "STALK_RESULT_BACKEND",
        "",
        "Result backend URL, same forms as the broker; empty means the broker itself.",
    )
    visibility_timeout_seconds: int = env(
        "STALK_VISIBILITY_TIMEOUT_SECONDS",
        3600,
        "Seconds before a taken but unacknowledged task is given to another worker; "
        "applied to broker and result backend alike, and must exceed the task time limit.",
    )
    task_soft_time_limit_seconds: int = env(
        "STALK_TASK_SOFT_TIME_LIMIT_SECONDS",
        300,
        "Default soft time limit: the task gets `SoftTimeLimitExceeded` to clean up.",
    )
    task_time_limit_seconds: int = env(
        "STALK_TASK_TIME_LIMIT_SECONDS",
        330,
        "Default hard time limit: the process running the task is killed.",
    )
    result_expires_seconds: int = env(
        "STALK_RESULT_EXPIRES_SECONDS", 86400, "How long task results are kept."
    )
    prefetch_multiplier: int = env(
        "STALK_PREFETCH_MULTIPLIER",
        1,
        "Tasks each process reserves ahead; 1 keeps queued work visible to the autoscaler.",
    )
    soft_shutdown_timeout_seconds: float = env(
        "STALK_SOFT_SHUTDOWN_TIMEOUT_SECONDS",
        30.0,
        "On a cold shutdown (SIGQUIT, or SIGTERM with `REMAP_SIGTERM=SIGQUIT`), time "
        "running tasks get before they are cancelled and requeued.",
    )
    task_events: bool = env("STALK_TASK_EVENTS", True, "Send task events (Flower needs them).")
    task_modules: tuple[str, ...] = env(
        "STALK_TASK_MODULES",
        (),
        "Extra task modules to import (comma-separated), besides those registered "
        "under the `stalk.tasks` entry point group.",
    )
    smtp_host: str = env("STALK_SMTP_HOST", "localhost", "SMTP server for email tasks.")
    smtp_port: int = env("STALK_SMTP_PORT", 587, "SMTP port.")
    smtp_username: str | None = env("STALK_SMTP_USERNAME", None, "SMTP user, if auth is on.")
    smtp_password: Secret | None = env("STALK_SMTP_PASSWORD", None, "SMTP password.")
    smtp_security: str = env(
        "STALK_SMTP_SECURITY",
        "starttls",
        "`starttls`, `tls` (implicit TLS, port 465) or `none`.",
    )
    smtp_timeout_seconds: float = env("STALK_SMTP_TIMEOUT_SECONDS", 30.0, "SMTP socket timeout.")
    mail_from: str = env("STALK_MAIL_FROM", "stalk@localhost", "Default sender address.")
    webhook_secret: Secret | None = env(
        "STALK_WEBHOOK_SECRET",
        None,
        "Key for the `X-Stalk-Signature` HMAC-SHA256 header of outgoing webhooks.",
    )
    webhook_timeout_seconds: float = env(
        "STALK_WEBHOOK_TIMEOUT_SECONDS", 10.0, "Timeout of one webhook request."
    )
    reports_dir: str = env(
        "STALK_REPORTS_DIR", "/var/lib/stalk/reports", "Where report tasks write their files."
    )
    scratch_dir: str = env(
        "STALK_SCRATCH_DIR",
        "/tmp/stalk",  # noqa: S108 - the container's own scratch space
        "Scratch space for file tasks; the maintenance task cleans it.",
    )

    def __post_init__(self) -> None:
        if self.task_soft_time_limit_seconds > self.task_time_limit_seconds:
            raise SettingsError(
                "STALK_TASK_SOFT_TIME_LIMIT_SECONDS must not exceed STALK_TASK_TIME_LIMIT_SECONDS"
            )
        if self.visibility_timeout_seconds <= self.task_time_limit_seconds:
            raise SettingsError(
                "STALK_VISIBILITY_TIMEOUT_SECONDS must exceed STALK_TASK_TIME_LIMIT_SECONDS, "
                "or running tasks would be handed to a second worker"
            )
        if self.prefetch_multiplier < 1:
            raise SettingsError("STALK_PREFETCH_MULTIPLIER must be at least 1")
        if self.smtp_security not in ("starttls", "tls", "none"):
            raise SettingsError("STALK_SMTP_SECURITY must be starttls, tls or none")

    def result_backend(self) -> BrokerEndpoint:
        return self.endpoint(self.result_backend_url or self.broker_url)


if __name__ == "__main__":
    print(markdown_table(WorkerSettings))
