"""One job the store refuses never fails the write-behind batch of the good ones around it."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import pytest

from adapter.celery.envelope import TASK_NAME
from adapter.celery.routing import celery_queue
from adapter.dead_letter import DeadLetter
from adapter.errors import StoreError
from adapter.job import Job
from adapter.store.base import JobStore
from adapter.store.memory import MemoryJobStore
from adapter.store.sql.store import SqlJobStore
from tests.bad_jobs import BatchOnlyWriteBehind
from tests.factories import make_job


class SqliteLikeMemoryStore(MemoryJobStore):
    """The memory store, refusing what SQLite's signed 64-bit INTEGER cannot hold, as SQLite."""

    def __init__(self) -> None:
        super().__init__()
        self.batches: list[int] = []

    def insert_many(self, new_jobs: Sequence[Job]) -> None:
        self.batches.append(len(new_jobs))
        if any(job.retries >= 2**63 for job in new_jobs):
            raise OverflowError("Python int too large to convert to SQLite INTEGER")
        super().insert_many(new_jobs)


class DownStore(MemoryJobStore):
    """A store that cannot be reached: every write fails."""

    def insert_many(self, new_jobs: Sequence[Job]) -> None:
        raise StoreError("job store memory:// failed: connection refused")

    def record_dead_letter(self, letter: DeadLetter) -> None:
        raise StoreError("job store memory:// failed: connection refused")


def bad_job() -> Job:
    """A job past validation (as ``model_construct`` allows) whose retries no SQL store holds."""
    return Job.model_construct(id="bad-job", queue_name="batch", retries=2**64)


def write_around_bad_one(store: JobStore) -> tuple[list[Job], Job]:
    """Add two good jobs, the bad one, two more good ones, as one batch; flush it."""
    good = [make_job(queue_name="batch") for _ in range(4)]
    bad = bad_job()
    behind = BatchOnlyWriteBehind(store)
    for job in [*good[:2], bad, *good[2:]]:
        behind.add(job)
    behind.flush()
    return good, bad


def assert_good_readable_and_bad_dead_lettered(
    store: JobStore, good: list[Job], bad: Job, refusal: str
) -> None:
    """Every good job is in the store now; the bad one is not, and is kept as a dead letter."""
    assert all(store.get(job.id or "") is not None for job in good)
    assert store.get("bad-job") is None
    letters = [letter for letter in store.dead_letters() if letter.task_id == bad.id]
    assert len(letters) == 1
    letter = letters[0]
    assert (letter.queue, letter.task_name) == (celery_queue("batch"), TASK_NAME)
    assert letter.reason.startswith("the job store refused added job bad-job: ")
    assert refusal in letter.reason
    assert '"retries": 18446744073709551616' in letter.body


def test_good_jobs_of_a_batch_with_a_refused_one_are_readable_at_once() -> None:
    store = SqliteLikeMemoryStore()
    good, bad = write_around_bad_one(store)
    assert store.batches[0] == 5  # one batch was tried, then each job alone
    assert_good_readable_and_bad_dead_lettered(store, good, bad, "OverflowError")


def test_a_refused_job_on_sqlite_is_dead_lettered_and_the_good_ones_stored(
    tmp_path: Path,
) -> None:
    store = SqlJobStore(f"sqlite:///{tmp_path / 'jobs.sqlite3'}")
    try:
        good, bad = write_around_bad_one(store)
        assert_good_readable_and_bad_dead_lettered(store, good, bad, "SQLite INTEGER")
    finally:
        store.close()


def test_a_batch_of_one_refused_job_is_dead_lettered() -> None:
    store = SqliteLikeMemoryStore()
    behind = BatchOnlyWriteBehind(store)
    behind.add(bad_job())
    behind.flush()
    assert [letter.task_id for letter in store.dead_letters()] == ["bad-job"]


def test_a_store_that_is_down_fails_the_next_flush_once_and_dead_letters_nothing(
    caplog: pytest.LogCaptureFixture,
) -> None:
    store = DownStore()
    behind = BatchOnlyWriteBehind(store)
    for _ in range(3):
        behind.add(make_job(queue_name="batch"))
    with caplog.at_level(logging.ERROR), pytest.raises(StoreError) as raised:
        behind.flush()
    assert "could not record 3 added job(s)" in str(raised.value)
    assert "the worker that runs each records it" in str(raised.value)
    assert "connection refused" in str(raised.value)
    assert any("could not record 3 added job(s)" in r.getMessage() for r in caplog.records)
    behind.flush()  # said once: nothing new was left unrecorded since
