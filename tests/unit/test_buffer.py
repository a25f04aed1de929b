"""Job buffers: both storages (in memory, SQL on SQLite) and the flush rules of Vendure §7.2."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import adapter
from adapter import buffer
from adapter.buffer import InMemoryJobBufferStorage, JobBufferService, JobBufferStorage
from adapter.errors import ConfigurationError
from adapter.job import Job
from adapter.store.sql.buffers import SqlJobBufferStorage
from adapter.strategy import JobQueueStrategy, ProcessFunction
from tests.factories import JoiningBuffer


class RecordingStrategy(JobQueueStrategy):
    """Records the jobs added to it and gives them ids; runs nothing."""

    def __init__(self) -> None:
        self.added: list[Job] = []

    def add(self, job: Job) -> Job:
        added = job.model_copy(update={"id": job.id or f"job-{len(self.added) + 1}"})
        self.added.append(added)
        return added

    def start(self, queue_name: str, process: ProcessFunction) -> None:
        """Run nothing."""

    def stop(self, queue_name: str, process: ProcessFunction) -> None:
        """Run nothing."""


class FailingReduceBuffer(JoiningBuffer):
    """Collects like JoiningBuffer but cannot reduce."""

    def reduce(self, jobs: list[Job]) -> list[Job]:
        raise RuntimeError("cannot reduce")


def sql_storage(folder: Path) -> SqlJobBufferStorage:
    """Return a SQL buffer storage on an SQLite file in ``folder``."""
    return SqlJobBufferStorage(f"sqlite:///{folder / 'buffer.sqlite3'}")


@pytest.fixture(params=["memory", "sql"])
def storage(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[JobBufferStorage]:
    """Each buffer storage, empty."""
    if request.param == "memory":
        yield InMemoryJobBufferStorage()
        return
    made = sql_storage(tmp_path)
    yield made
    made.close()


def job(data: Any, queue_name: str = "q") -> Job:
    """Return an unpublished job (no id) with ``data``."""
    return Job(queue_name=queue_name, data=data)


def test_added_jobs_are_counted_per_buffer(storage: JobBufferStorage) -> None:
    storage.add("a", job(1))
    storage.add("a", job(2))
    storage.add("b", job(3))
    assert storage.buffer_size(["a", "b"]) == {"a": 2, "b": 1}


def test_flush_returns_each_buffers_jobs_oldest_first(storage: JobBufferStorage) -> None:
    for n in range(5):
        storage.add("a", job({"n": n}, queue_name=f"q{n}"))
    storage.add("b", job("other"))
    flushed = storage.flush(["a"])
    assert list(flushed) == ["a"]
    assert [(j.queue_name, j.data, j.id) for j in flushed["a"]] == [
        (f"q{n}", {"n": n}, None) for n in range(5)
    ]


def test_flush_empties_only_the_flushed_buffers(storage: JobBufferStorage) -> None:
    storage.add("a", job(1))
    storage.add("b", job(2))
    storage.flush(["a"])
    assert storage.buffer_size(["a", "b"]) == {"a": 0, "b": 1}
    assert storage.flush(["a"]) == {"a": []}
    assert [j.data for j in storage.flush(["b"])["b"]] == [2]


def test_unknown_buffer_ids_are_empty(storage: JobBufferStorage) -> None:
    assert storage.buffer_size(["nope"]) == {"nope": 0}
    assert storage.flush(["nope"]) == {"nope": []}


def test_stored_job_keeps_its_fields(storage: JobBufferStorage) -> None:
    original = Job(queue_name="q", data={"to": "a@b.c", "n": [1, 2]}, retries=3)
    storage.add("a", original)
    (stored,) = storage.flush(["a"])["a"]
    assert stored.model_dump() == original.model_dump()


def test_sql_buffered_jobs_survive_reopening_the_storage(tmp_path: Path) -> None:
    first = sql_storage(tmp_path)
    first.add("a", job("hello"))
    first.add("a", job("world"))
    first.close()
    reopened = sql_storage(tmp_path)
    try:
        assert reopened.buffer_size(["a"]) == {"a": 2}
        assert [j.data for j in reopened.flush(["a"])["a"]] == ["hello", "world"]
    finally:
        reopened.close()


def test_malformed_sql_url_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match="malformed"):
        SqlJobBufferStorage("not a url")


def test_the_sql_storage_is_importable_from_adapter_and_adapter_buffer() -> None:
    assert adapter.SqlJobBufferStorage is buffer.SqlJobBufferStorage is SqlJobBufferStorage


@pytest.fixture
def strategy() -> RecordingStrategy:
    """A strategy recording what a flush publishes."""
    return RecordingStrategy()


@pytest.fixture
def buffers(strategy: RecordingStrategy) -> JobBufferService:
    """A buffer service with in-memory storage and no buffers."""
    return JobBufferService(strategy, InMemoryJobBufferStorage())


def collect(buffers: JobBufferService, added: Job) -> bool:
    """Offer ``added`` to the buffers as JobQueue.add does; True if any collected it."""
    collectors = buffers.collectors(added)
    buffers.store(collectors, added)
    return bool(collectors)


def test_buffer_id_must_be_unique(buffers: JobBufferService) -> None:
    buffers.add_buffer(JoiningBuffer("same", "q1"))
    with pytest.raises(ConfigurationError, match="same"):
        buffers.add_buffer(JoiningBuffer("same", "q2"))


def test_only_collected_jobs_are_buffered(buffers: JobBufferService) -> None:
    buffers.add_buffer(JoiningBuffer("b", "q1"))
    assert collect(buffers, job("hello", "q1"))
    assert not collect(buffers, job("other", "q2"))
    assert buffers.buffer_size() == {"b": 1}


def test_a_job_collected_by_two_buffers_is_stored_in_both(buffers: JobBufferService) -> None:
    buffers.add_buffer(JoiningBuffer("first", "q"))
    buffers.add_buffer(JoiningBuffer("second", "q"))
    assert buffers.collectors(job("x")) == ["first", "second"]
    collect(buffers, job("x"))
    assert buffers.buffer_size() == {"first": 1, "second": 1}


def test_flush_publishes_what_the_buffer_reduces_to(
    buffers: JobBufferService, strategy: RecordingStrategy
) -> None:
    buffer = JoiningBuffer("b", "q")
    buffers.add_buffer(buffer)
    collect(buffers, job("hello"))
    collect(buffers, job("world"))
    flushed = buffers.flush(buffer)
    assert [(j.id, j.data) for j in flushed] == [("job-1", "hello world")]
    assert [j.data for j in strategy.added] == ["hello world"]
    assert buffers.buffer_size(buffer) == {"b": 0}


def test_flush_without_arguments_flushes_every_registered_buffer(
    buffers: JobBufferService,
) -> None:
    buffers.add_buffer(JoiningBuffer("a", "q1"))
    buffers.add_buffer(JoiningBuffer("b", "q2"))
    collect(buffers, job("one", "q1"))
    collect(buffers, job("two", "q2"))
    assert sorted(j.data for j in buffers.flush()) == ["one", "two"]


def test_failing_reduce_publishes_the_unreduced_jobs(
    buffers: JobBufferService, strategy: RecordingStrategy
) -> None:
    buffers.add_buffer(FailingReduceBuffer("b", "q"))
    collect(buffers, job("hello"))
    collect(buffers, job("world"))
    assert [j.data for j in buffers.flush("b")] == ["hello", "world"]
    assert [j.data for j in strategy.added] == ["hello", "world"]


def test_flushing_an_unregistered_buffer_empties_it_and_publishes_nothing(
    buffers: JobBufferService, strategy: RecordingStrategy
) -> None:
    buffer = JoiningBuffer("b", "q")
    buffers.add_buffer(buffer)
    collect(buffers, job("hello"))
    buffers.remove_buffer(buffer)
    assert not collect(buffers, job("not collected any more"))
    assert buffers.buffer_size("b") == {"b": 1}
    assert buffers.flush("b") == []
    assert strategy.added == []
    assert buffers.buffer_size("b") == {"b": 0}
