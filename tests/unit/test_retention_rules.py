"""Retention rules: spelled in the adapter_retention setting, checked, and the built-in task."""

from __future__ import annotations

from datetime import timedelta

import pytest

from adapter.errors import ConfigurationError, ScheduleError
from adapter.job import JobState, utcnow
from adapter.retention import RetentionRule
from adapter.scheduling import Scheduler
from adapter.scheduling.retention_task import RETENTION_TASK_ID
from adapter.settings import AdapterSettings
from adapter.store.memory import MemoryJobStore
from tests.factories import make_job


def test_the_setting_reads_rules_with_empty_fields_as_no_limit() -> None:
    found = AdapterSettings.from_conf(
        {"adapter_retention": "*:COMPLETED:1000:7d; send-email:failed::1h30m"}
    )
    assert found.retention == (
        RetentionRule("*", JobState.COMPLETED, keep=1000, max_age=timedelta(days=7)),
        RetentionRule("send-email", JobState.FAILED, max_age=timedelta(hours=1, minutes=30)),
    )
    assert AdapterSettings.from_conf({}).retention == ()


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("q:PENDING:10:", "rule 0: retention rule q:PENDING: state must be settled"),
        ("q:COMPLETED::", "rule 0: retention rule q:COMPLETED: give keep, max_age or both"),
        ("a:FAILED:1:;q:COMPLETED:-1:", "rule 1: retention rule q:COMPLETED: keep must be >= 0"),
        ("q:COMPLETED:1", "rule 0: retention rule 'q:COMPLETED:1': use QUEUE:STATE:KEEP:MAX_AGE"),
        ("q:COMPLETED::soon", "not a duration: 'soon'"),
        ("q:DONE:1:", "'DONE' is not a valid JobState"),
        (42, "adapter_retention must be QUEUE:STATE:KEEP:MAX_AGE rules separated by ';', not int"),
    ],
)
def test_a_bad_rule_is_refused_naming_the_setting_and_the_rule(raw: object, message: str) -> None:
    with pytest.raises(ConfigurationError, match=r"^adapter_retention must be") as caught:
        AdapterSettings.from_conf({"adapter_retention": raw})
    assert message in str(caught.value)


def test_rules_given_as_objects_are_checked_when_made() -> None:
    with pytest.raises(ScheduleError, match="max_age must be > 0"):
        RetentionRule("q", JobState.FAILED, max_age=timedelta(0))


def test_the_workers_apply_the_rules_as_the_built_in_scheduled_task() -> None:
    store = MemoryJobStore()
    old = utcnow() - timedelta(days=9)
    store.insert_many(
        [make_job(queue_name="q", state=JobState.COMPLETED, created_at=old, settled_at=old)
         for _ in range(3)]
    )  # fmt: skip
    settings = AdapterSettings.from_conf(
        {"adapter_retention": "q:COMPLETED::7d", "adapter_retention_schedule": "*/5 * * * *"}
    )
    scheduler = Scheduler.from_settings(store, settings)
    (info,) = scheduler.tasks()
    assert (info.id, info.schedule) == (RETENTION_TASK_ID, "*/5 * * * *")
    scheduler.run_now(RETENTION_TASK_ID)
    assert len(scheduler.poll_once()) == 1
    assert scheduler.wait_for_runs(timeout=10)
    assert scheduler.tasks()[0].last_result == {"removed": {"q:COMPLETED": 3}}
    assert store.find_many({}).total_items == 0
