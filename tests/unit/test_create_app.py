"""``create_app`` works from any folder and leaves the shop's own tasks as Celery makes them."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from adapter import CeleryJobQueueStrategy
from adapter.celery.app import create_app
from adapter.celery.envelope import TASK_NAME
from adapter.celery.results import has_result_backend
from adapter.errors import ConfigurationError
from adapter.store.memory import MemoryJobStore


def test_the_broker_and_store_come_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("ADAPTER_BROKER_URL", "redis://127.0.0.1:6379/3")
    monkeypatch.setenv("ADAPTER_STORE_URL", f"sqlite:///{tmp_path / 'jobs.sqlite3'}")
    app = create_app("shop", config="tests.unit.test_create_app")  # a module of no settings
    assert app.conf.broker_url == "redis://127.0.0.1:6379/3"
    assert app.conf.adapter_store_url == f"sqlite:///{tmp_path / 'jobs.sqlite3'}"


def test_given_settings_win_over_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ADAPTER_BROKER_URL", "redis://127.0.0.1:6379/3")
    assert create_app("shop", broker_url="memory://").conf.broker_url == "memory://"


def test_an_empty_folder_without_celeryconfig_gets_the_embedded_default(tmp_path: Path) -> None:
    env = {key: value for key, value in os.environ.items() if not key.startswith("ADAPTER_")}
    env.pop("PYTHONPATH", None)
    env["ADAPTER_DATA_DIR"] = str(tmp_path / "data")
    code = (
        "from adapter.celery.app import create_app; c = create_app('shop').conf; "
        "print(c.broker_url, c.broker_transport_options['data_folder_in'])"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["filesystem://", str(tmp_path / "data/broker/messages")]


def test_the_shops_tasks_keep_celerys_delivery_defaults() -> None:
    app = create_app("shop", broker_url="memory://")
    CeleryJobQueueStrategy(app, store=MemoryJobStore()).destroy()

    @app.task(name="shop.total")  # type: ignore[untyped-decorator]
    def total(*numbers: int) -> int:
        return sum(numbers)

    shop_task = app.tasks["shop.total"]
    assert (shop_task.acks_late, shop_task.reject_on_worker_lost, shop_task.ignore_result) == (
        False,
        None,
        False,
    )
    job_task = app.tasks[TASK_NAME]
    assert (job_task.acks_late, job_task.reject_on_worker_lost) == (True, True)
    assert job_task.ignore_result is False  # results follow the app: none without a backend


def test_the_job_task_sends_json_whatever_the_apps_serializer() -> None:
    app = create_app("shop", broker_url="memory://", task_serializer="pickle")
    strategy = CeleryJobQueueStrategy(app, store=MemoryJobStore())
    try:
        assert app.tasks[TASK_NAME].serializer == "json"
    finally:
        strategy.destroy()


@pytest.mark.parametrize(("setting", "ignored"), [(None, False), ("false", True), ("true", False)])
def test_adapter_job_results_says_whether_jobs_write_celery_results(
    setting: str | None, ignored: bool
) -> None:
    extra = {} if setting is None else {"adapter_job_results": setting}
    app = create_app("results", broker_url="memory://", result_backend="cache+memory://", **extra)
    strategy = CeleryJobQueueStrategy(app, store=MemoryJobStore())
    try:
        job_task = app.tasks[TASK_NAME]
        assert job_task.ignore_result is ignored
        assert has_result_backend(app) is not ignored
    finally:
        strategy.destroy()


def test_a_bad_adapter_job_results_value_is_refused_naming_the_setting() -> None:
    app = create_app("results", broker_url="memory://", adapter_job_results="maybe")
    with pytest.raises(ConfigurationError, match="adapter_job_results must be true or false"):
        CeleryJobQueueStrategy(app, store=MemoryJobStore())
