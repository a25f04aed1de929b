"""SqlJobStore on an SQLite file: what only the SQL store has (sharing a file, opening, schema).

The behaviour every store shares (round trips, claiming, the settled guard, snapshots, several
processes) is in tests/contract/test_store_contract.py, run on SQLite and PostgreSQL there.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from adapter.errors import ConfigurationError, StoreError
from adapter.job import Job, JobState
from adapter.store.sql.store import SqlJobStore
from adapter.store.sql.tables import SCHEMA_VERSION
from tests.factories import make_job


def sqlite_url(folder: Path) -> str:
    """Return the URL of a job store file in ``folder``."""
    return f"sqlite:///{folder / 'jobs.sqlite3'}"


def stored(store: SqlJobStore, job: Job) -> Job:
    """Return ``job`` as the store holds it now; fail if it is missing."""
    assert job.id is not None
    found = store.get(job.id)
    assert found is not None, f"job {job.id} is not in the store"
    return found


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
    with pytest.raises(ConfigurationError, match=r"^malformed job store URL not a url "):
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
