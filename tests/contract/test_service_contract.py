"""Vendure's job-queue.service.spec.ts, ported: JobQueueService over every broker.

Vendure's steps "after one poll" become "eventually" here (no timing assertions). Its tests
"with concurrency" and "sets long-running jobs to pending on destroy" are not ported: they need
per-queue concurrency and a graceful-shutdown timeout, which the worker does not have yet.
"""

from __future__ import annotations

import asyncio
import itertools
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from adapter import CeleryJobQueueStrategy, Job, JobState
from adapter.buffer import (
    InMemoryJobBufferStorage,
    JobBufferStorage,
    SqlJobBufferStorage,
)
from adapter.service import BUFFERED_JOB_ID, JobQueueInfo, JobQueueService
from tests.contract.conftest import BackoffRecorder
from tests.factories import JoiningBuffer
from tests.support import delete_queues, unique_queue, wait_for, wait_job, wait_settled

MakeService = Callable[..., JobQueueService]
PENDING, RUNNING, COMPLETED = JobState.PENDING, JobState.RUNNING, JobState.COMPLETED


@pytest.fixture
def make_service(strategy: CeleryJobQueueStrategy) -> Iterator[MakeService]:
    """``make_service(**options)`` builds a service; each is stopped and its queues deleted."""
    made: list[JobQueueService] = []

    def make(**options: Any) -> JobQueueService:
        service = JobQueueService(strategy, **options)
        made.append(service)
        return service

    yield make
    for service in made:
        service.stop()
        delete_queues(strategy, *(info.name for info in service.get_job_queues()))


@pytest.fixture
def service(make_service: MakeService) -> JobQueueService:
    """A started service, so created queues start at once (as in Vendure's spec)."""
    made = make_service()
    made.start()
    return made


@pytest.fixture
def name(request: pytest.FixtureRequest) -> str:
    """A queue name no other test uses."""
    return unique_queue(request.node.name.split("[")[0].removeprefix("test_")[:30])


def wait_states(
    strategy: CeleryJobQueueStrategy, jobs: Sequence[Job], expected: list[JobState]
) -> None:
    """Wait until the stored states of ``jobs`` are ``expected``, in order."""

    def probe() -> list[JobState | None] | None:
        found = [strategy.find_one(job.id or "") for job in jobs]
        states = [job.state if job is not None else None for job in found]
        return states if states == expected else None

    wait_for(probe, f"states {[state.value for state in expected]}")


def test_data_is_passed_into_the_job(
    service: JobQueueService, strategy: CeleryJobQueueStrategy, name: str
) -> None:
    seen: list[Any] = []
    queue = service.create_queue(name, lambda job: seen.append(job.data))
    assert queue.started
    wait_settled(strategy, queue.add("hello"))
    assert seen == ["hello"]


def test_job_is_marked_complete_with_its_result(
    service: JobQueueService, strategy: CeleryJobQueueStrategy, name: str
) -> None:
    release = threading.Event()

    def process(job: Job) -> str:
        release.wait(30)
        return "yay"

    queue = service.create_queue(name, process)
    job = queue.add(None)
    assert job.state == PENDING
    try:
        wait_job(strategy, job.id or "", lambda found: found.state == RUNNING, "running")
    finally:
        release.set()
    done = wait_settled(strategy, job)
    assert (done.state, done.result) == (COMPLETED, "yay")


def test_job_is_marked_failed_when_an_exception_is_raised(
    service: JobQueueService, strategy: CeleryJobQueueStrategy, name: str
) -> None:
    def process(job: Job) -> None:
        raise Exception("uh oh")

    failed = wait_settled(strategy, service.create_queue(name, process).add(None))
    assert (failed.state, failed.error) == (JobState.FAILED, "uh oh")


def test_job_is_marked_failed_when_an_async_error_is_raised(
    service: JobQueueService, strategy: CeleryJobQueueStrategy, name: str
) -> None:
    async def process(job: Job) -> None:
        await asyncio.sleep(0)
        raise RuntimeError("something bad happened")

    failed = wait_settled(strategy, service.create_queue(name, process).add(None))
    assert (failed.state, failed.error) == (JobState.FAILED, "something bad happened")


def test_jobs_are_processed_first_in_first_out(
    service: JobQueueService, strategy: CeleryJobQueueStrategy, name: str
) -> None:
    gates = [threading.Event() for _ in range(3)]
    queue = service.create_queue(name, lambda job: gates[job.data].wait(30))
    jobs = [queue.add(n) for n in range(3)]
    try:
        wait_states(strategy, jobs, [RUNNING, PENDING, PENDING])
        gates[0].set()
        wait_states(strategy, jobs, [COMPLETED, RUNNING, PENDING])
        gates[1].set()
        wait_states(strategy, jobs, [COMPLETED, COMPLETED, RUNNING])
    finally:
        for gate in gates:
            gate.set()
    done = [wait_settled(strategy, job) for job in jobs]
    assert [job.state for job in done] == [COMPLETED] * 3
    for earlier, later in itertools.pairwise(done):
        assert earlier.settled_at is not None and later.started_at is not None
        assert earlier.settled_at <= later.started_at


def test_existing_jobs_are_processed_on_start(
    make_service: MakeService, strategy: CeleryJobQueueStrategy, name: str
) -> None:
    existing = [strategy.add(Job(queue_name=name, data=n)) for n in range(2)]
    seen: list[Any] = []
    service = make_service()
    queue = service.create_queue(name, lambda job: seen.append(job.data))
    assert not queue.started
    service.start()
    assert queue.started
    assert [wait_settled(strategy, job).state for job in existing] == [COMPLETED] * 2
    assert seen == [0, 1]


def test_failing_job_is_retried_with_backoff_then_fails(
    service: JobQueueService, strategy: CeleryJobQueueStrategy, backoff: BackoffRecorder, name: str
) -> None:
    def process(job: Job) -> None:
        raise RuntimeError(f"attempt {job.attempts} failed")

    job = service.create_queue(name, process).add(None, retries=2)
    assert not job.is_settled
    failed = wait_settled(strategy, job)
    assert (failed.state, failed.attempts, failed.is_settled) == (JobState.FAILED, 3, True)
    assert backoff.for_queue(name) == [
        (name, 1, job.id, JobState.RETRYING),
        (name, 2, job.id, JobState.RETRYING),
    ]


def test_queue_in_the_active_list_is_started(
    make_service: MakeService, strategy: CeleryJobQueueStrategy, name: str
) -> None:
    service = make_service(active_queues=[name])
    service.start()
    queue = service.create_queue(name, lambda job: "yay")
    assert queue.started
    done = wait_settled(strategy, queue.add(None))
    assert (done.state, done.result) == (COMPLETED, "yay")


def test_queue_not_in_the_active_list_is_not_started(
    make_service: MakeService, strategy: CeleryJobQueueStrategy, name: str
) -> None:
    calls: list[Job] = []
    service = make_service(active_queues=["another"])
    service.start()
    queue = service.create_queue(name, calls.append)
    job = queue.add(None)
    time.sleep(2)  # give a wrongly started queue the chance to take the job
    assert not queue.started
    stored = strategy.find_one(job.id or "")
    assert stored is not None and stored.state == PENDING
    assert calls == []


def test_prefix_is_applied_to_queue_names(
    make_service: MakeService, strategy: CeleryJobQueueStrategy, name: str
) -> None:
    prefixed = f"staging-{name}"
    service = make_service(prefix="staging-", active_queues=[prefixed])
    service.start()
    queue = service.create_queue(name, lambda job: job.queue_name)
    assert (queue.name, queue.started) == (prefixed, True)
    job = queue.add(None)
    assert job.queue_name == prefixed
    assert wait_settled(strategy, job).result == prefixed


def test_get_job_queues_tells_which_queues_run_in_this_process(
    make_service: MakeService, name: str
) -> None:
    names = [f"{name}-a", f"{name}-b", f"{name}-c"]
    service = make_service(active_queues=[names[0], names[2]])
    first, second = (service.create_queue(n, lambda job: None) for n in names[:2])
    assert service.get_job_queues() == [JobQueueInfo(n, False) for n in names[:2]]
    service.start()
    service.start()
    third = service.create_queue(names[2], lambda job: None)
    assert service.started and (first.started, second.started, third.started) == (
        True,
        False,
        True,
    )
    assert service.get_job_queues() == [
        JobQueueInfo(names[0], True),
        JobQueueInfo(names[1], False),
        JobQueueInfo(names[2], True),
    ]
    service.stop()
    service.stop()
    assert not service.started
    assert service.get_job_queues() == [JobQueueInfo(n, False) for n in names]


def test_buffered_jobs_are_held_back(
    service: JobQueueService, strategy: CeleryJobQueueStrategy, name: str
) -> None:
    held_name, other_name = f"{name}-1", f"{name}-2"
    buffer = JoiningBuffer(f"buffer-{name}", held_name)
    service.add_buffer(buffer)
    held_queue = service.create_queue(held_name, lambda job: job.data)
    other_queue = service.create_queue(other_name, lambda job: job.data)
    held = [held_queue.add("hello"), held_queue.add("world")]
    others = [other_queue.add("hello"), other_queue.add("world")]
    assert [job.id for job in held] == [BUFFERED_JOB_ID] * 2
    assert [wait_settled(strategy, job).state for job in others] == [COMPLETED] * 2
    published = strategy.find_many({"filter": {"queueName": {"eq": held_name}}})
    assert published.total_items == 0
    assert service.buffer_size(buffer) == {buffer.id: 2}


@pytest.fixture(params=["memory", "sqlite", "postgres"])
def buffer_storage(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[JobBufferStorage]:
    """Each buffer storage: in memory, SQL on an SQLite file, SQL on PostgreSQL."""
    if request.param == "memory":
        yield InMemoryJobBufferStorage()
        return
    url = (
        f"sqlite:///{tmp_path / 'buffer.sqlite3'}"
        if request.param == "sqlite"
        else request.getfixturevalue("postgres_url")
    )
    made = SqlJobBufferStorage(url)
    yield made
    made.close()


def test_flush_publishes_what_the_buffer_reduces_to(
    make_service: MakeService,
    strategy: CeleryJobQueueStrategy,
    name: str,
    buffer_storage: JobBufferStorage,
) -> None:
    service = make_service(buffer_storage=buffer_storage)
    service.start()
    buffer = JoiningBuffer(f"buffer-{name}", name)
    service.add_buffer(buffer)
    queue = service.create_queue(name, lambda job: f"processed {job.data}")
    queue.add("hello")
    queue.add("world")
    flushed = service.flush(buffer)
    assert [(job.data, job.state) for job in flushed] == [("hello world", PENDING)]
    done = wait_settled(strategy, flushed[0])
    assert (done.state, done.result) == (COMPLETED, "processed hello world")
    assert service.buffer_size(buffer) == {buffer.id: 0}
    assert strategy.find_many({"filter": {"queueName": {"eq": name}}}).total_items == 1


class RecordingErrorHandler:
    """Records the errors it is told about."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, str | None]] = []

    def handle_worker_error(self, error: Exception, job: Job) -> None:
        self.seen.append((str(error), job.id))


class BrokenErrorHandler:
    """Fails while handling an error."""

    def handle_worker_error(self, error: Exception, job: Job) -> None:
        raise RuntimeError("the error handler broke")


def test_error_handlers_hear_of_process_errors_and_the_job_still_fails(
    make_service: MakeService, strategy: CeleryJobQueueStrategy, name: str
) -> None:
    recorder = RecordingErrorHandler()
    service = make_service(error_handlers=[BrokenErrorHandler(), recorder])
    service.start()

    def plain(job: Job) -> None:
        raise ValueError("uh oh")

    async def asynchronous(job: Job) -> None:
        await asyncio.sleep(0)
        raise ValueError("async uh oh")

    plain_job = service.create_queue(f"{name}-sync", plain).add(None)
    async_job = service.create_queue(f"{name}-async", asynchronous).add(None)
    ok_job = service.create_queue(f"{name}-ok", lambda job: "fine").add(None)
    failed = [wait_settled(strategy, job) for job in (plain_job, async_job)]
    assert [(job.state, job.error) for job in failed] == [
        (JobState.FAILED, "uh oh"),
        (JobState.FAILED, "async uh oh"),
    ]
    assert wait_settled(strategy, ok_job).result == "fine"
    assert sorted(recorder.seen) == sorted([("uh oh", plain_job.id), ("async uh oh", async_job.id)])
