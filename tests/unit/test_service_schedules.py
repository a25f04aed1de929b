"""``JobQueueService``'s scheduled-task calls, over the strategy's scheduler."""

from __future__ import annotations

import uuid

import pytest
from celery import Celery

from adapter import CeleryJobQueueStrategy, ConfigurationError, JobQueueService, ScheduledTask
from adapter.store.memory import MemoryJobStore


def test_the_service_adds_lists_runs_and_disables_scheduled_tasks() -> None:
    app = Celery(f"svc-{uuid.uuid4().hex[:8]}")
    app.config_from_object("celeryconfig")
    app.conf.broker_url = "memory://"
    strategy = CeleryJobQueueStrategy(app, store=MemoryJobStore(), embedded_worker=False)
    service = JobQueueService(strategy)
    runs: list[str] = []
    service.add_scheduled_task(
        ScheduledTask(id="hourly", schedule="0 * * * *", execute=lambda: runs.append("ran"))
    )
    (info,) = service.get_scheduled_tasks()
    assert (info.id, info.schedule_description, info.enabled) == ("hourly", "Every hour", True)
    service.run_scheduled_task("hourly")
    strategy.scheduler.poll_once()  # what a worker's scheduler thread does
    assert strategy.scheduler.wait_for_runs(timeout=10)
    assert runs == ["ran"]
    assert service.update_scheduled_task("hourly", enabled=False).enabled is False
    strategy.destroy()


def test_a_strategy_without_a_scheduler_is_refused_by_name() -> None:
    class Plain:
        pass

    service = JobQueueService(Plain())  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="Plain runs no scheduled tasks"):
        service.get_scheduled_tasks()
