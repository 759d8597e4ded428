"""Worker settings from the environment: parsing, validation, and the documented table."""

from __future__ import annotations

import pytest
from stalk_config import SettingsError
from stalk_operator.settings import OperatorSettings
from stalk_worker.config import celery_config
from stalk_worker.settings import WorkerSettings


def test_defaults_are_the_reliability_defaults():
    config = celery_config(WorkerSettings.from_environ({}))
    assert config["task_acks_late"] is True
    assert config["task_reject_on_worker_lost"] is True
    assert config["worker_prefetch_multiplier"] == 1
    assert config["accept_content"] == ["json"]
    assert (
        config["broker_transport_options"]["visibility_timeout"]
        == config["result_backend_transport_options"]["visibility_timeout"]
        > config["task_time_limit"]
    )


def test_values_are_parsed_by_type():
    settings = WorkerSettings.from_environ(
        {
            "STALK_PREFETCH_MULTIPLIER": "4",
            "STALK_TASK_EVENTS": "off",
            "STALK_PRIORITY_STEPS": "0, 5",
            "STALK_TASK_MODULES": "a.tasks,b.tasks",
            "STALK_SOFT_SHUTDOWN_TIMEOUT_SECONDS": "12.5",
        }
    )
    assert settings.prefetch_multiplier == 4
    assert settings.task_events is False
    assert settings.priority_steps == (0, 5)
    assert settings.task_modules == ("a.tasks", "b.tasks")
    assert settings.soft_shutdown_timeout_seconds == 12.5


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({"STALK_PREFETCH_MULTIPLIER": "many"}, "STALK_PREFETCH_MULTIPLIER='many'"),
        ({"STALK_TASK_EVENTS": "maybe"}, "expected true or false"),
        ({"STALK_PREFETCH_MULTIPLIER": "0"}, "at least 1"),
        ({"STALK_TASK_TIME_LIMIT_SECONDS": "4000"}, "must exceed STALK_TASK_TIME_LIMIT_SECONDS"),
        ({"STALK_TASK_SOFT_TIME_LIMIT_SECONDS": "900"}, "must not exceed"),
        ({"STALK_SMTP_SECURITY": "ssl3"}, "starttls, tls or none"),
    ],
)
def test_bad_values_are_refused_with_the_variable_named(environ, message):
    with pytest.raises(SettingsError, match=message):
        WorkerSettings.from_environ(environ)


def test_password_goes_into_the_celery_url_but_not_the_repr():
    settings = WorkerSettings.from_environ(
        {
            "STALK_BROKER_URL": "sentinel://10.0.0.1:26379;sentinel://10.0.0.2:26379",
            "STALK_REDIS_PASSWORD": "p@ss/word",
            "STALK_SENTINEL_PASSWORD": "sent",
        }
    )
    config = celery_config(settings)
    assert config["broker_url"] == (
        "sentinel://:p%40ss%2Fword@10.0.0.1:26379/0;sentinel://:p%40ss%2Fword@10.0.0.2:26379/0"
    )
    assert config["broker_transport_options"]["master_name"] == "mymaster"
    sentinel_links = config["broker_transport_options"]["sentinel_kwargs"]
    assert sentinel_links["password"] == "sent"
    # The result backend gives its Sentinel links no timeout of its own: this one.
    assert config["result_backend_transport_options"]["sentinel_kwargs"]["socket_timeout"] > 0
    assert "p@ss" not in repr(settings.broker())
    assert "p@ss" not in settings.broker().describe()


def test_no_settings_object_shows_a_secret():
    """Settings objects end up in logs and tracebacks: their secrets never print."""
    worker = WorkerSettings.from_environ(
        {
            "STALK_REDIS_PASSWORD": "w-redis-pw",
            "STALK_SENTINEL_PASSWORD": "w-sentinel-pw",
            "STALK_SMTP_PASSWORD": "w-smtp-pw",
            "STALK_WEBHOOK_SECRET": "w-hook-key",
        }
    )
    operator = OperatorSettings.from_environ(
        {"STALK_DEFAULT_REDIS_PASSWORD": "o-redis-pw", "STALK_DEFAULT_SENTINEL_PASSWORD": "o-s"}
    )
    shown = f"{worker!r} {worker} {operator!r} {operator}"
    for secret in ("w-redis-pw", "w-sentinel-pw", "w-smtp-pw", "w-hook-key", "o-redis-pw"):
        assert secret not in shown
    assert worker.broker().password == "w-redis-pw", "revealed where it is used"
    with pytest.raises(SettingsError) as refused:
        OperatorSettings.from_environ(
            {"STALK_DEFAULT_REDIS_PASSWORD": "x", "STALK_PRIORITY": "pw1"}
        )
    assert "pw1" in str(refused.value), "a plain setting's bad value is shown"
