"""``jobqueue schedules``: list the tasks of the app, ask for a run, enable and disable one."""

from __future__ import annotations

import json
import uuid

import pytest
from celery import Celery

import adapter.cli
from adapter import CeleryJobQueueStrategy
from adapter.cli import main
from adapter.scheduling import ScheduledTask
from adapter.store.memory import MemoryJobStore


@pytest.fixture
def store(monkeypatch: pytest.MonkeyPatch) -> MemoryJobStore:
    """The memory store of the strategy each command runs on; the app has one nightly task."""
    kept = MemoryJobStore()

    def load_strategy(app: str | None) -> CeleryJobQueueStrategy:
        celery_app = Celery(f"cli-{uuid.uuid4().hex[:8]}")
        celery_app.config_from_object("celeryconfig")
        celery_app.conf.broker_url = "memory://"
        made = CeleryJobQueueStrategy(celery_app, store=kept, embedded_worker=False)
        made.scheduler.add(
            ScheduledTask(id="nightly", schedule="0 3 * * *", execute=print, description="d")
        )
        return made

    monkeypatch.setattr(adapter.cli, "load_strategy", load_strategy)
    return kept


def test_schedules_lists_the_tasks_with_their_schedule_in_words(
    store: MemoryJobStore, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["schedules"]) == 0
    header, row = capsys.readouterr().out.strip().splitlines()
    assert header.split()[:3] == ["ID", "SCHEDULE", "WHEN"]
    assert row.startswith("nightly  0 3 * * *  At 03:00 AM  yes")


def test_schedules_run_asks_a_worker_for_a_run(
    store: MemoryJobStore, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["schedules", "run", "nightly"]) == 0
    assert "asked for a run of nightly" in capsys.readouterr().out
    assert store.schedules.records()["nightly"].run_requested_at is not None


def test_schedules_disable_and_enable_as_json(
    store: MemoryJobStore, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["schedules", "disable", "nightly", "--json"]) == 0
    (shown,) = json.loads(capsys.readouterr().out)
    assert (shown["id"], shown["enabled"], shown["nextRunAt"]) == ("nightly", False, None)
    assert main(["schedules", "enable", "nightly", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)[0]["enabled"] is True


def test_schedules_with_an_unknown_id_or_none_fails_in_one_line(
    store: MemoryJobStore, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["schedules", "run", "nope"]) == 1
    assert capsys.readouterr().err.strip() == (
        "jobqueue: no scheduled task 'nope' (known: nightly)"
    )
    assert main(["schedules", "run"]) == 1
    assert "name the task" in capsys.readouterr().err
