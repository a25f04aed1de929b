"""Publish on commit: a job added inside a SQLAlchemy transaction exists only if it commits.

Runs on every broker, with the application's database on an SQLite file and on PostgreSQL.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session

from adapter import CeleryJobQueueStrategy, Job, JobState
from adapter.buffer import JobBuffer
from adapter.service import BUFFERED_JOB_ID, JobQueue, JobQueueService
from tests.support import delete_queues, unique_queue, wait_settled


class Orders:
    """The application's table, written in the same transaction as the job is added."""

    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine
        self.table = sa.Table(
            f"test_order_{uuid.uuid4().hex[:10]}",
            sa.MetaData(),
            sa.Column("id", sa.Integer, primary_key=True),
            sa.Column("note", sa.String(100)),
        )

    def insert(self, session: Session, note: str) -> None:
        """Write one order in ``session``'s transaction."""
        session.execute(self.table.insert().values(note=note))

    def notes(self) -> list[str]:
        """Return the committed orders' notes."""
        with self.engine.connect() as conn:
            return [row.note for row in conn.execute(sa.select(self.table.c.note))]


@pytest.fixture(params=["sqlite", "postgres"])
def orders(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Orders]:
    """A fresh orders table on an SQLite file, then on PostgreSQL."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'app.sqlite3'}"
    else:
        url = request.getfixturevalue("postgres_url")
    made = Orders(sa.create_engine(url))
    made.table.create(made.engine)
    yield made
    made.table.drop(made.engine)
    made.engine.dispose()


@pytest.fixture
def seen() -> list[Any]:
    """The data of every job the queue processed."""
    return []


@pytest.fixture
def queue(
    strategy: CeleryJobQueueStrategy, request: pytest.FixtureRequest, seen: list[Any]
) -> Iterator[JobQueue]:
    """A started queue whose process records each job's data."""
    service = JobQueueService(strategy)
    service.start()
    made = service.create_queue(
        unique_queue(request.node.name.split("[")[0].removeprefix("test_")[:30]),
        lambda job: seen.append(job.data),
    )
    yield made
    service.stop()
    delete_queues(strategy, made.name)


def test_job_of_a_rolled_back_transaction_is_never_published(
    strategy: CeleryJobQueueStrategy, queue: JobQueue, orders: Orders, seen: list[Any]
) -> None:
    with Session(orders.engine) as session:
        orders.insert(session, "rolled back")
        dropped = queue.add("rolled back", transaction=session)
        session.rollback()
    with Session(orders.engine) as session:
        orders.insert(session, "committed")
        control = queue.add("committed", transaction=session)
        session.commit()
    assert wait_settled(strategy, control).state == JobState.COMPLETED
    assert seen == ["committed"]
    assert orders.notes() == ["committed"]
    assert dropped.id is not None and strategy.find_one(dropped.id) is None


def test_job_of_a_committed_transaction_is_published_after_the_commit(
    strategy: CeleryJobQueueStrategy, queue: JobQueue, orders: Orders, seen: list[Any]
) -> None:
    with Session(orders.engine) as session:
        orders.insert(session, "order 1")
        job = queue.add({"order": 1}, transaction=session)
        assert job.id is not None and job.state == JobState.PENDING
        assert strategy.find_one(job.id) is None
        session.commit()
    done = wait_settled(strategy, job)
    assert (done.id, done.state) == (job.id, JobState.COMPLETED)
    assert seen == [{"order": 1}]


def test_job_of_a_session_closed_without_commit_is_never_published(
    strategy: CeleryJobQueueStrategy, queue: JobQueue, orders: Orders, seen: list[Any]
) -> None:
    with Session(orders.engine) as session:
        orders.insert(session, "abandoned")
        dropped = queue.add("abandoned", transaction=session)
    control = queue.add("control")
    assert wait_settled(strategy, control).state == JobState.COMPLETED
    assert seen == ["control"]
    assert dropped.id is not None and strategy.find_one(dropped.id) is None


def test_job_added_in_a_rolled_back_savepoint_follows_the_outer_transaction(
    strategy: CeleryJobQueueStrategy, queue: JobQueue, orders: Orders, seen: list[Any]
) -> None:
    with Session(orders.engine) as session:
        orders.insert(session, "outer")
        savepoint = session.begin_nested()
        job = queue.add("inside the savepoint", transaction=session)
        savepoint.rollback()
        session.commit()
    assert wait_settled(strategy, job).state == JobState.COMPLETED
    assert seen == ["inside the savepoint"]


class CollectAll(JobBuffer):
    """Collects every job."""

    id = "collect-all"

    def collect(self, job: Job) -> bool:
        return True

    def reduce(self, jobs: list[Job]) -> list[Job]:
        return jobs


def test_buffered_job_is_stored_only_when_the_transaction_commits(
    strategy: CeleryJobQueueStrategy, orders: Orders
) -> None:
    service = JobQueueService(strategy)
    service.add_buffer(CollectAll())
    queue = service.create_queue(unique_queue("buffered-on-commit"), lambda job: None)
    with Session(orders.engine) as session:
        assert queue.add("dropped", transaction=session).id == BUFFERED_JOB_ID
        session.rollback()
    assert service.buffer_size() == {CollectAll.id: 0}
    with Session(orders.engine) as session:
        queue.add("kept", transaction=session)
        assert service.buffer_size() == {CollectAll.id: 0}
        session.commit()
    assert service.buffer_size() == {CollectAll.id: 1}


def test_a_connection_is_refused_as_a_transaction(queue: JobQueue, orders: Orders) -> None:
    with orders.engine.connect() as conn, pytest.raises(TypeError, match="Session"):
        queue.add("never", transaction=conn)
