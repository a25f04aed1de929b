"""SqlJobStore on an SQLite file: round trips, claiming, the settled guard, sharing the file."""

from __future__ import annotations

import multiprocessing
import sqlite3
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from adapter.errors import ConfigurationError, StoreError
from adapter.job import Job, JobState
from adapter.store.sql.store import SCHEMA_VERSION, SqlJobStore
from tests.factories import make_job

CREATED = datetime(2020, 3, 1, 10, 0, 0, 123456, tzinfo=UTC)


def sqlite_url(folder: Path) -> str:
    """Return the URL of a job store file in ``folder``."""
    return f"sqlite:///{folder / 'jobs.sqlite3'}"


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SqlJobStore]:
    """A store on a fresh SQLite file, closed after the test."""
    opened = SqlJobStore(sqlite_url(tmp_path))
    yield opened
    opened.close()


def stored(store: SqlJobStore, job: Job) -> Job:
    """Return ``job`` as the store holds it now; fail if it is missing."""
    assert job.id is not None
    found = store.get(job.id)
    assert found is not None, f"job {job.id} is not in the store"
    return found


# insert / get / delete


def test_get_returns_every_field_that_was_inserted(store: SqlJobStore) -> None:
    berlin = timezone(timedelta(hours=2))
    job = make_job(
        queue_name="send-email",
        data={"to": ["a@example.com"], "n": 1, "nested": {"ok": True}},
        state=JobState.FAILED,
        progress=37.5,
        result={"sent": [1, 2]},
        error="smtp down",
        retries=3,
        attempts=4,
        created_at=CREATED,
        started_at=datetime(2020, 3, 1, 12, 0, 1, 654321, tzinfo=berlin),
        settled_at=datetime(2020, 3, 1, 10, 0, 2, 1, tzinfo=UTC),
    )
    store.insert(job)
    found = stored(store, job)
    assert found == job
    assert found.started_at is not None
    assert found.started_at.utcoffset() == timedelta(0)


def test_get_returns_timezone_aware_utc_datetimes(store: SqlJobStore) -> None:
    job = make_job(created_at=CREATED, started_at=CREATED, settled_at=CREATED)
    store.insert(job)
    found = stored(store, job)
    for value in (found.created_at, found.started_at, found.settled_at):
        assert value is not None
        assert value.utcoffset() == timedelta(0)
    assert found.created_at == CREATED


def test_get_of_unset_fields_gives_them_back_unset(store: SqlJobStore) -> None:
    job = make_job(data=None)
    store.insert(job)
    found = stored(store, job)
    assert found.data is None and found.result is None and found.error is None
    assert found.started_at is None and found.settled_at is None
    assert found.progress == 0 and isinstance(found.progress, int)


def test_get_of_unknown_id_is_none(store: SqlJobStore) -> None:
    assert store.get("no-such-job") is None


def test_delete_removes_the_job(store: SqlJobStore) -> None:
    job = make_job()
    store.insert(job)
    assert job.id is not None
    store.delete(job.id)
    assert store.get(job.id) is None


def test_delete_of_unknown_id_changes_nothing(store: SqlJobStore) -> None:
    job = make_job()
    store.insert(job)
    store.delete("no-such-job")
    assert stored(store, job) == job


# claim


def test_claim_moves_pending_job_to_running_and_counts_an_attempt(store: SqlJobStore) -> None:
    job = make_job()
    store.insert(job)
    claimed = store.claim(job)
    assert claimed is not None
    assert claimed.state == JobState.RUNNING
    assert claimed.attempts == 1
    assert claimed.started_at is not None
    assert stored(store, job) == claimed


def test_claim_of_retrying_job_counts_another_attempt(store: SqlJobStore) -> None:
    job = make_job(state=JobState.RETRYING, retries=2, attempts=1)
    store.insert(job)
    claimed = store.claim(job)
    assert claimed is not None
    assert (claimed.state, claimed.attempts) == (JobState.RUNNING, 2)


@pytest.mark.parametrize("state", [JobState.COMPLETED, JobState.FAILED, JobState.CANCELLED])
def test_claim_of_settled_job_returns_none_and_changes_nothing(
    store: SqlJobStore, state: JobState
) -> None:
    job = make_job(state=state, attempts=1, settled_at=CREATED)
    store.insert(job)
    before = stored(store, job)
    assert store.claim(job) is None
    assert stored(store, job) == before


def test_claim_of_cancelled_pending_job_returns_none(store: SqlJobStore) -> None:
    job = make_job()
    store.insert(job)
    cancelled = stored(store, job)
    cancelled.cancel()
    assert store.update(cancelled)
    assert store.claim(job) is None
    assert stored(store, job).state == JobState.CANCELLED


def test_claim_of_unknown_job_inserts_it_then_claims_it(store: SqlJobStore) -> None:
    job = make_job(queue_name="resize-image", data={"w": 10}, retries=2)
    claimed = store.claim(job)
    assert claimed is not None
    assert (claimed.state, claimed.attempts) == (JobState.RUNNING, 1)
    assert (claimed.queue_name, claimed.data, claimed.retries) == ("resize-image", {"w": 10}, 2)
    assert stored(store, job) == claimed


# set_progress / update and the settled guard


def test_set_progress_of_unsettled_job_is_recorded(store: SqlJobStore) -> None:
    job = make_job()
    store.insert(job)
    assert store.set_progress(str(job.id), 40)
    assert stored(store, job).progress == 40


def test_set_progress_of_settled_job_is_refused(store: SqlJobStore) -> None:
    job = make_job(state=JobState.COMPLETED, progress=100, settled_at=CREATED)
    store.insert(job)
    assert store.set_progress(str(job.id), 40) is False
    assert stored(store, job).progress == 100


def test_update_writes_the_outcome_of_an_unsettled_job(store: SqlJobStore) -> None:
    job = make_job()
    store.insert(job)
    running = store.claim(job)
    assert running is not None
    running.complete({"sent": 3})
    assert store.update(running)
    found = stored(store, job)
    assert (found.state, found.result, found.progress) == (JobState.COMPLETED, {"sent": 3}, 100)
    assert found.is_settled


def test_update_of_settled_job_is_refused(store: SqlJobStore) -> None:
    job = make_job()
    store.insert(job)
    first = stored(store, job)
    first.start()
    first.fail("boom")
    assert first.state == JobState.FAILED
    assert store.update(first)
    second = stored(store, job)
    second.complete("late")
    assert store.update(second) is False
    found = stored(store, job)
    assert (found.state, found.result, found.error) == (JobState.FAILED, None, "boom")


def test_late_completion_never_overwrites_a_cancellation(store: SqlJobStore) -> None:
    job = make_job()
    store.insert(job)
    running = store.claim(job)
    assert running is not None
    cancelled = stored(store, job)
    cancelled.cancel()
    assert store.update(cancelled)
    running.complete("late result")
    assert store.update(running) is False
    assert store.set_progress(str(job.id), 50) is False
    found = stored(store, job)
    assert (found.state, found.result) == (JobState.CANCELLED, None)


def test_update_and_set_progress_of_unknown_job_are_refused(store: SqlJobStore) -> None:
    assert store.update(make_job(id="no-such-job")) is False
    assert store.set_progress("no-such-job", 10) is False
    assert store.get("no-such-job") is None


def test_update_keeps_the_creation_time(store: SqlJobStore) -> None:
    job = make_job(created_at=CREATED)
    store.insert(job)
    changed = stored(store, job)
    changed.created_at = CREATED + timedelta(days=1)
    changed.set_progress(10)
    assert store.update(changed)
    found = stored(store, job)
    assert (found.created_at, found.progress) == (CREATED, 10)


# Snapshots


def test_returned_jobs_are_independent_snapshots(store: SqlJobStore) -> None:
    job = make_job(data={"lines": [1]})
    store.insert(job)
    first = stored(store, job)
    first.data["lines"].append(2)
    first.cancel()
    second = stored(store, job)
    assert second.data == {"lines": [1]}
    assert second.state == JobState.PENDING
    assert second is not first


def test_changing_an_inserted_job_does_not_change_the_store(store: SqlJobStore) -> None:
    job = make_job(data={"lines": [1]})
    store.insert(job)
    job.data["lines"].append(2)
    job.start()
    found = stored(store, job)
    assert found.data == {"lines": [1]}
    assert found.state == JobState.PENDING


def test_claimed_job_is_a_snapshot(store: SqlJobStore) -> None:
    job = make_job()
    claimed = store.claim(job)
    assert claimed is not None
    claimed.complete("not written")
    assert stored(store, job).state == JobState.RUNNING


# Sharing one file


def test_second_store_on_the_same_file_sees_the_same_jobs(tmp_path: Path) -> None:
    first, second = SqlJobStore(sqlite_url(tmp_path)), SqlJobStore(sqlite_url(tmp_path))
    try:
        job = make_job()
        first.insert(job)
        assert stored(second, job) == stored(first, job)
        claimed = second.claim(job)
        assert claimed is not None
        assert stored(first, job).state == JobState.RUNNING
    finally:
        first.close()
        second.close()


def _write_from_child(store: SqlJobStore, job: Job, existing_id: str) -> None:
    store.insert(job)
    assert store.set_progress(existing_id, 55)


def test_store_used_in_a_forked_child_writes_what_the_parent_reads(store: SqlJobStore) -> None:
    existing = make_job()
    store.insert(existing)
    from_child = make_job(queue_name="from-child")
    child = multiprocessing.get_context("fork").Process(
        target=_write_from_child, args=(store, from_child, str(existing.id))
    )
    child.start()
    child.join(timeout=60)
    assert child.exitcode == 0
    assert stored(store, from_child).queue_name == "from-child"
    assert stored(store, existing).progress == 55


# Opening


def test_store_creates_the_folder_of_its_sqlite_file(tmp_path: Path) -> None:
    folder = tmp_path / "a" / "b"
    opened = SqlJobStore(sqlite_url(folder))
    try:
        opened.insert(make_job())
        assert (folder / "jobs.sqlite3").exists()
    finally:
        opened.close()


def test_malformed_url_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match=r"^malformed job store URL: "):
        SqlJobStore("not a url")


def test_store_of_another_schema_version_is_refused(tmp_path: Path) -> None:
    first = SqlJobStore(sqlite_url(tmp_path))
    first.get("creates-the-tables")
    first.close()
    with sqlite3.connect(tmp_path / "jobs.sqlite3") as conn:
        conn.execute("UPDATE adapter_meta SET value = '99' WHERE key = 'schema'")
    conn.close()
    reopened = SqlJobStore(sqlite_url(tmp_path))
    with pytest.raises(StoreError) as caught:
        reopened.get("anything")
    reopened.close()
    assert str(caught.value) == (
        f"job store schema version is 99, this adapter needs {SCHEMA_VERSION}"
    )
