"""Pushed job changes, on the stores that have them: memory, PostgreSQL, Redis.

A watch taken on a job (``JobStore.watch``) is woken by every write of its state or progress:
claim, progress, outcome, transitions. SQLite pushes nothing: its watch only ever times out,
and ``updates()`` polls. Waits are bounded by generous timeouts; nothing here measures time.
"""

from __future__ import annotations

import multiprocessing
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from adapter.job import Job, JobState, utcnow
from adapter.store.base import JobStore
from adapter.store.changes import Change
from adapter.store.memory import MemoryJobStore
from adapter.store.redis.store import RedisJobStore
from adapter.store.sql.store import SqlJobStore
from tests.factories import make_job
from tests.support import delete_redis_keys, postgres_schema

#: Seconds a watch is given to be woken: far longer than a notification takes.
WOKEN_WITHIN_S = 10.0

PUSHING_STORES = [
    "memory",
    pytest.param("postgres", marks=pytest.mark.postgres),
    pytest.param("redis", marks=pytest.mark.redis),
]
SHARED_PUSHING_STORES = PUSHING_STORES[1:]


@pytest.fixture
def store(request: pytest.FixtureRequest) -> Iterator[JobStore]:
    """An empty store of the kind the test is parametrized with, closed after it."""
    kind = request.param
    if kind == "memory":
        yield MemoryJobStore()
    elif kind == "postgres":
        with postgres_schema(request.getfixturevalue("postgres_url"), "changes") as url:
            opened = SqlJobStore(url)
            yield opened
            opened.close()
    else:
        redis_url: str = request.getfixturevalue("redis_url")
        prefix = f"adapter-changes-{uuid.uuid4().hex[:12]}"
        opened_redis = RedisJobStore(redis_url, prefix=prefix)
        yield opened_redis
        opened_redis.close()
        delete_redis_keys(redis_url, prefix)


def _settle(store: JobStore, job: Job) -> None:
    store.update(job.model_copy(update={"state": JobState.COMPLETED, "result": 1}))


WRITES: dict[str, Callable[[JobStore, Job], object]] = {
    "claim": lambda store, job: store.claim(job),
    "set_progress": lambda store, job: store.set_progress(str(job.id), 40),
    "outcome": _settle,
    "cancel": lambda store, job: store.cancel(str(job.id)),
}


@pytest.mark.parametrize("store", PUSHING_STORES, indirect=True)
@pytest.mark.parametrize("write", list(WRITES))
def test_a_watch_is_woken_by_each_write_of_its_jobs_state_or_progress(
    store: JobStore, write: str
) -> None:
    job = make_job()
    store.insert(job)
    with store.watch(str(job.id)) as watch:
        WRITES[write](store, job)
        assert watch.wait(WOKEN_WITHIN_S)


@pytest.mark.parametrize("store", PUSHING_STORES, indirect=True)
def test_a_watch_is_woken_by_the_claim_that_first_records_its_job(store: JobStore) -> None:
    job = make_job()  # a worker's claim reached the store before the producer's write
    with store.watch(str(job.id)) as watch:
        assert store.claim(job) is not None
        assert watch.wait(WOKEN_WITHIN_S)
        assert watch.take_change() in (None, Change(JobState.RUNNING))


@pytest.mark.parametrize("store", PUSHING_STORES, indirect=True)
def test_a_watch_is_not_woken_by_another_jobs_write(store: JobStore) -> None:
    mine, other = make_job(), make_job()
    store.insert(mine)
    store.insert(other)
    with store.watch(str(mine.id)) as watch, store.watch(str(other.id)) as other_watch:
        store.set_progress(str(other.id), 10)
        assert other_watch.wait(WOKEN_WITHIN_S)  # the notification has arrived by now
        assert not watch.wait(0)


def test_a_sqlite_watch_is_never_woken_so_its_reader_polls(tmp_path: Path) -> None:
    store = SqlJobStore(f"sqlite:///{tmp_path / 'jobs.sqlite3'}")
    job = make_job()
    store.insert(job)
    with store.watch(str(job.id)) as watch:
        store.set_progress(str(job.id), 10)
        assert not watch.wait(0.05)
    store.close()


def _watch_in_child(store: JobStore, job_id: str) -> None:
    with store.watch(job_id) as watch:
        store.set_progress(job_id, 70)
        raise SystemExit(0 if watch.wait(WOKEN_WITHIN_S) else 1)


@pytest.mark.parametrize("store", SHARED_PUSHING_STORES, indirect=True)
def test_a_forked_child_gets_its_own_listener(store: JobStore) -> None:
    job = make_job()
    store.insert(job)
    with store.watch(str(job.id)):  # the parent's listener runs before the fork
        pass
    child = multiprocessing.get_context("fork").Process(
        target=_watch_in_child, args=(store, str(job.id))
    )
    child.start()
    child.join(WOKEN_WITHIN_S * 3)
    assert child.exitcode == 0


@pytest.mark.postgres
@pytest.mark.parametrize("store", ["postgres"], indirect=True)
def test_a_postgres_notification_tells_the_state_and_carries_the_settled_job_as_stored(
    store: JobStore,
) -> None:
    job = make_job(data={"to": "ada@example.com"}, retries=2)
    store.insert(job)
    with store.watch(str(job.id)) as watch:
        claimed = store.claim(job)
        assert claimed is not None
        assert watch.wait(WOKEN_WITHIN_S)
        assert watch.take_change() == Change(JobState.RUNNING)  # unsettled: the state alone
        claimed.state, claimed.result, claimed.settled_at = JobState.COMPLETED, [1.5], utcnow()
        store.update(claimed)
        assert watch.wait(WOKEN_WITHIN_S)
        told = watch.take_change()
    assert told is not None and told.settled is not None
    assert told.settled == store.get(str(job.id))


@pytest.mark.postgres
@pytest.mark.parametrize("store", ["postgres"], indirect=True)
def test_a_postgres_notification_of_a_job_too_big_to_carry_tells_its_state_alone(
    store: JobStore,
) -> None:
    job = make_job()
    store.insert(job)
    with store.watch(str(job.id)) as watch:
        failed = {"state": JobState.FAILED, "error": "x" * 9000, "settled_at": utcnow()}
        store.update(job.model_copy(update=failed))
        assert watch.wait(WOKEN_WITHIN_S)
        assert watch.take_change() == Change(JobState.FAILED)  # read from the store instead


@pytest.mark.postgres
def test_a_database_an_older_release_made_gets_the_notifying_function_of_this_one(
    postgres_url: str,
) -> None:
    older_function = (
        "CREATE OR REPLACE FUNCTION adapter_job_changed() RETURNS trigger LANGUAGE plpgsql"
        " AS $$ BEGIN PERFORM pg_notify('adapter_job_changed', NEW.id); RETURN NULL; END $$"
    )
    with postgres_schema(postgres_url, "changes") as url:
        first = SqlJobStore(url)
        job = make_job()
        first.insert(job)
        engine = sa.create_engine(url)
        with engine.begin() as conn:
            conn.execute(sa.text(older_function))  # as the older release left it
        engine.dispose()
        first.close()
        store = SqlJobStore(url)
        with store.watch(str(job.id)) as watch:
            store.set_progress(str(job.id), 30)
            assert watch.wait(WOKEN_WITHIN_S)
            assert watch.take_change() == Change(JobState.PENDING)
        store.close()
