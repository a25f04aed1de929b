"""A PostgreSQL store's pooled connections: one the server closed is replaced before use.

The store pings no connection before each use (a round trip per statement); it looks at the
socket instead. Here the server ends the store's connections (``pg_terminate_backend``, as a
restart does) and the next calls, a single statement and a transaction, still succeed.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
import sqlalchemy as sa

from adapter.job import Job, JobState
from adapter.store.sql.store import SqlJobStore
from tests.factories import make_job
from tests.support import postgres_schema, wait_for

pytestmark = pytest.mark.postgres


@pytest.fixture
def store_and_name(postgres_url: str) -> Iterator[tuple[SqlJobStore, str]]:
    """A store whose connections carry an application name of their own."""
    name = f"adapter-conn-{uuid.uuid4().hex[:12]}"
    with postgres_schema(postgres_url, "connections") as url:
        opened = SqlJobStore(
            sa.make_url(url)
            .update_query_dict({"application_name": name})
            .render_as_string(hide_password=False)
        )
        yield opened, name
        opened.close()


def _terminate(postgres_url: str, application_name: str) -> int:
    """End every server connection of ``application_name`` and wait until they are gone."""
    admin = sa.create_engine(postgres_url)
    of_name = sa.text("SELECT pid FROM pg_stat_activity WHERE application_name = :name")
    try:
        # autocommit: pg_stat_activity is read once per transaction
        with admin.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            pids = [row.pid for row in conn.execute(of_name, {"name": application_name})]
            for pid in pids:
                conn.execute(sa.text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
            wait_for(
                lambda: not conn.execute(of_name, {"name": application_name}).all(),
                "the store's connections to end",
            )
    finally:
        admin.dispose()
    return len(pids)


def test_connections_the_server_ended_are_replaced_before_use(
    postgres_url: str, store_and_name: tuple[SqlJobStore, str]
) -> None:
    store, name = store_and_name
    job = make_job()
    store.insert(job)
    assert _terminate(postgres_url, name) >= 1
    found = store.get(str(job.id))  # one statement, in autocommit
    assert found is not None and found.state == JobState.PENDING
    assert _terminate(postgres_url, name) >= 1
    claimed = store.claim_many([job, make_job()])  # a transaction
    assert [isinstance(each, Job) and each.state for each in claimed] == [JobState.RUNNING] * 2
