"""Preflight findings for dangerous Celery settings (no broker is contacted)."""

from __future__ import annotations

from typing import Any

from celery import Celery

from adapter.celery.preflight import check_settings


def app_with(**settings: Any) -> Celery:
    """Return an app configured from celeryconfig, then ``settings``."""
    app = Celery("preflight")
    app.config_from_object("celeryconfig")
    app.conf.update({"broker_url": "amqp://guest:guest@127.0.0.1:5672//", **settings})
    return app


def settings_named(app: Celery, longest: float | None = None) -> list[str]:
    """Return the settings the findings name."""
    return [finding.setting for finding in check_settings(app, longest)]


def test_the_shipped_config_on_rabbitmq_has_no_finding() -> None:
    assert settings_named(app_with()) == []


def test_pickle_in_accept_content_is_flagged() -> None:
    findings = check_settings(app_with(accept_content=["json", "pickle"]))
    assert [f.setting for f in findings] == ["accept_content"]
    assert "accepts pickle" in findings[0].message


def test_the_shops_own_task_defaults_are_not_findings() -> None:
    shop = app_with(task_acks_late=True, task_reject_on_worker_lost=False, task_ignore_result=False)
    assert settings_named(shop) == []


def test_prefetch_and_startup_retry_are_flagged() -> None:
    app = app_with(worker_prefetch_multiplier=4, broker_connection_retry_on_startup=None)
    assert settings_named(app) == [
        "worker_prefetch_multiplier",
        "broker_connection_retry_on_startup",
    ]


def test_redis_visibility_timeout_shorter_than_the_longest_job_is_flagged() -> None:
    app = app_with(broker_url="redis://127.0.0.1:6379/0")
    assert settings_named(app, longest=600) == []
    assert settings_named(app, longest=7200) == ["broker_transport_options.visibility_timeout"]
    app.conf.broker_transport_options = {"visibility_timeout": 10_000}
    assert settings_named(app, longest=7200) == []


def test_long_jobs_on_rabbitmq_mention_the_server_consumer_timeout() -> None:
    assert settings_named(app_with(), longest=3600) == ["consumer_timeout (RabbitMQ server)"]


def test_the_embedded_default_is_flagged_for_production() -> None:
    assert settings_named(app_with(broker_url="filesystem://")) == ["broker_url"]
