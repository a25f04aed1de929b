"""The scheduling fields of a job (ready_at, priority, unique_key, retried_from) in every store.

Round trip through every write and read, filters and sorts that agree with
``adapter.conditions.list_jobs``, and the upgrade of stores written before the fields existed: a
SQL table of the first release gains the columns and indexes on open (from many processes at
once, on SQLite and PostgreSQL), and a Redis hash without them reads as the defaults.
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import redis
import sqlalchemy as sa

from adapter.job import Job, JobState
from adapter.store.base import JobStore
from adapter.store.redis.store import RedisJobStore
from adapter.store.sql.store import SqlJobStore
from adapter.store.sql.tables import SCHEMA_VERSION, jobs
from tests.contract import test_store_contract as contract
from tests.contract.test_store_contract import agreed, stock
from tests.factories import make_job
from tests.support import postgres_schema

# The store contract's fixtures: every store, emptied after each test.
store = contract.store
postgres_store = contract.postgres_store
redis_prefix = contract.redis_prefix
redis_store = contract.redis_store

SOON = datetime(2030, 5, 1, 12, 0, 0, 250000, tzinfo=UTC)
PAST = datetime(2020, 5, 1, 12, 0, 0, 250000, tzinfo=UTC)


def scheduled_jobs() -> list[Job]:
    """Jobs with every combination the filters below tell apart, created in order."""
    created = datetime(2020, 1, 1, tzinfo=UTC)
    fields: list[dict[str, Any]] = [
        {"id": "plain"},
        {"id": "later", "ready_at": SOON + timedelta(hours=1), "priority": 3},
        {"id": "soon", "ready_at": SOON, "priority": 9, "unique_key": "sku-1"},
        {"id": "urgent", "priority": 9, "unique_key": "sku-2"},
        {"id": "rerun", "retried_from": "plain", "priority": 1},
        {"id": "rerun-2", "retried_from": "rerun", "ready_at": SOON},
    ]
    return [
        make_job(queue_name="sched", created_at=created + timedelta(minutes=n), **overrides)
        for n, overrides in enumerate(fields)
    ]


def test_the_fields_round_trip_through_insert_get_and_claim(store: JobStore) -> None:
    job = make_job(
        ready_at=PAST, priority=7, unique_key="k-\u00e9", retried_from="earlier", timeout=2.5
    )
    store.insert(job)
    stored = store.get(str(job.id))
    assert stored is not None and stored.timeout == 2.5
    assert (stored.ready_at, stored.priority, stored.unique_key, stored.retried_from) == (
        PAST,
        7,
        "k-\u00e9",
        "earlier",
    )
    claimed = store.claim(job)
    assert claimed is not None and claimed.state is JobState.RUNNING
    assert (claimed.ready_at, claimed.priority, claimed.unique_key) == (PAST, 7, "k-\u00e9")
    assert store.find_many_by_id([str(job.id)])[0].retried_from == "earlier"
    assert claimed.timeout == 2.5


def test_a_job_without_them_reads_back_the_defaults(store: JobStore) -> None:
    job = make_job()
    store.insert_many([job])
    stored = store.get(str(job.id))
    assert stored is not None
    assert (stored.ready_at, stored.priority, stored.unique_key, stored.retried_from) == (
        None,
        0,
        None,
        None,
    )
    assert stored.timeout is None


def test_an_attempt_s_writes_keep_them(store: JobStore) -> None:
    job = make_job(ready_at=PAST, priority=4, unique_key="k", retried_from="r")
    store.insert(job)
    claimed = store.claim(job)
    assert claimed is not None
    claimed.complete("done")
    assert store.update(claimed.model_copy(update={"priority": 0, "ready_at": None}))
    stored = store.get(str(job.id))
    assert stored is not None and stored.state is JobState.COMPLETED
    assert (stored.ready_at, stored.priority, stored.unique_key) == (PAST, 4, "k")


FILTERS: list[tuple[dict[str, Any], list[str]]] = [
    ({"readyAt": {"isNull": True}}, ["plain", "urgent", "rerun"]),
    ({"readyAt": {"eq": SOON.isoformat()}}, ["soon", "rerun-2"]),
    ({"readyAt": {"after": SOON.isoformat()}}, ["later"]),
    ({"readyAt": {"before": "2031-01-01T00:00:00Z"}}, ["later", "soon", "rerun-2"]),
    ({"priority": {"eq": 9}}, ["soon", "urgent"]),
    ({"priority": {"gte": 1, "lt": 9}}, ["later", "rerun"]),
    ({"priority": {"between": {"start": 0, "end": 1}}}, ["plain", "rerun", "rerun-2"]),
    ({"retriedFrom": {"eq": "plain"}}, ["rerun"]),
    ({"retriedFrom": {"in": ["plain", "rerun"]}}, ["rerun", "rerun-2"]),
    ({"retriedFrom": {"isNull": False}}, ["rerun", "rerun-2"]),
    ({"uniqueKey": {"eq": "sku-2"}}, ["urgent"]),
    ({"uniqueKey": {"isNull": False}, "priority": {"eq": 9}}, ["soon", "urgent"]),
    ({"state": {"eq": "PENDING"}, "readyAt": {"isNull": False}}, ["later", "soon", "rerun-2"]),
]


@pytest.mark.parametrize(("filter", "expected"), FILTERS, ids=[str(f) for f, _ in FILTERS])
def test_filters_on_them_agree_everywhere(
    store: JobStore, filter: dict[str, Any], expected: list[str]
) -> None:
    stocked = stock(store, scheduled_jobs())
    assert agreed(store, stocked, {"filter": filter}) == expected


@pytest.mark.parametrize(
    ("sort", "expected"),
    [
        ({"priority": "DESC"}, ["soon", "urgent", "later", "rerun", "plain", "rerun-2"]),
        ({"readyAt": "ASC"}, ["plain", "rerun", "urgent", "rerun-2", "soon", "later"]),
        ({"readyAt": "DESC"}, ["later", "rerun-2", "soon", "plain", "rerun", "urgent"]),
        ({"priority": "DESC", "createdAt": "DESC"}, ["urgent", "soon", "later", "rerun"]),
    ],
)
def test_sorts_on_them_agree_everywhere(
    store: JobStore, sort: dict[str, str], expected: list[str]
) -> None:
    stocked = stock(store, scheduled_jobs())
    assert agreed(store, stocked, {"sort": sort, "take": len(expected)}) == expected


# Stores written before the fields existed

#: The job table exactly as the first release created it.
_V1_DDL = """
CREATE TABLE adapter_job (
    id VARCHAR(64) NOT NULL PRIMARY KEY,
    queue_name VARCHAR(200) NOT NULL,
    data TEXT,
    state VARCHAR(16) NOT NULL,
    progress FLOAT NOT NULL,
    result TEXT,
    error TEXT,
    retries INTEGER NOT NULL,
    attempts INTEGER NOT NULL,
    created_at TIMESTAMP NOT NULL,
    started_at TIMESTAMP,
    settled_at TIMESTAMP,
    updated_at TIMESTAMP NOT NULL,
    is_settled BOOLEAN NOT NULL
);
CREATE INDEX ix_adapter_job_queue_state_created ON adapter_job (queue_name, state, created_at);
CREATE INDEX ix_adapter_job_created ON adapter_job (created_at);
CREATE TABLE adapter_meta (key VARCHAR(64) NOT NULL PRIMARY KEY, value VARCHAR(200) NOT NULL);
INSERT INTO adapter_meta (key, value) VALUES ('schema', '1');
INSERT INTO adapter_job VALUES ('old-1', 'mail', '{"to": 1}', 'PENDING', 0, 'null', NULL, 2, 0,
    '2024-01-01 00:00:00', NULL, NULL, '2024-01-01 00:00:00', false);
"""
#: Processes that open the first release's table at once.
OPENERS = 4


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def v1_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """The URL of a database holding the first release's tables and one job."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'old.sqlite3'}"
        yield _with_v1_tables(url)
        return
    with postgres_schema(request.getfixturevalue("postgres_url"), "v1") as url:
        yield _with_v1_tables(url)


def _with_v1_tables(url: str) -> str:
    engine = sa.create_engine(url)
    try:
        with engine.begin() as conn:
            for statement in filter(str.strip, _V1_DDL.split(";")):
                conn.exec_driver_sql(statement)
    finally:
        engine.dispose()
    return url


def _open_and_insert(url: str, n: int, start: Any) -> None:
    start.wait(timeout=30)
    opened = SqlJobStore(url)
    try:
        opened.insert(make_job(id=f"new-{n}", queue_name="mail", priority=n % 10))
    finally:
        opened.close()


def test_a_first_release_table_gains_the_columns_once_when_many_processes_open_it(
    v1_url: str,
) -> None:
    context = multiprocessing.get_context("fork")
    start = context.Barrier(OPENERS)
    openers = [
        context.Process(target=_open_and_insert, args=(v1_url, n, start)) for n in range(OPENERS)
    ]
    for opener in openers:
        opener.start()
    for opener in openers:
        opener.join(timeout=60)
    assert [opener.exitcode for opener in openers] == [0] * OPENERS

    engine = sa.create_engine(v1_url)
    try:
        inspector = sa.inspect(engine)
        assert {column["name"] for column in inspector.get_columns("adapter_job")} == set(
            jobs.c.keys()
        )
        assert {index["name"] for index in inspector.get_indexes("adapter_job")} == {
            index.name for index in jobs.indexes
        }
        with engine.connect() as conn:
            version = conn.exec_driver_sql("SELECT value FROM adapter_meta").scalars().all()
    finally:
        engine.dispose()
    assert version == [str(SCHEMA_VERSION)]

    reopened = SqlJobStore(v1_url)
    try:
        old = reopened.get("old-1")
        assert old is not None and (old.data, old.retries) == ({"to": 1}, 2)
        assert (old.ready_at, old.priority, old.unique_key, old.retried_from) == (
            None,
            0,
            None,
            None,
        )
        new = reopened.find_many({"filter": {"priority": {"eq": 3}}}).items
        assert [job.id for job in new] == ["new-3"]
    finally:
        reopened.close()


@pytest.mark.redis
def test_a_redis_hash_written_before_the_fields_reads_as_the_defaults(
    redis_store: RedisJobStore, redis_url: str
) -> None:
    job = make_job(priority=5)
    redis_store.insert(job)
    client = redis.Redis.from_url(redis_url)
    try:
        assert client.hdel(redis_store.keys.job(str(job.id)), "priority") == 1
    finally:
        client.close()
    stored = redis_store.get(str(job.id))
    assert stored is not None and (stored.priority, stored.ready_at) == (0, None)
