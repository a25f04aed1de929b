"""Vendure's job-queue semantics, written once and run on every broker (see conftest.py)."""

from __future__ import annotations

import asyncio
import itertools
import threading
import time
from typing import Any

import pytest

from adapter import CeleryJobQueueStrategy, Job, JobState
from tests.contract.conftest import BackoffRecorder
from tests.support import wait_job, wait_settled


def test_data_reaches_the_process(strategy: CeleryJobQueueStrategy, queue: str, run: Any) -> None:
    seen: list[Any] = []
    job = strategy.add(Job(queue_name=queue, data={"greeting": "hello", "n": [1, 2]}))
    run(queue, lambda j: seen.append(j.data))
    wait_settled(strategy, job)
    assert seen == [{"greeting": "hello", "n": [1, 2]}]


def test_added_job_is_pending_with_a_string_id(
    strategy: CeleryJobQueueStrategy, queue: str
) -> None:
    job = strategy.add(Job(queue_name=queue, data="hello"))
    assert isinstance(job.id, str) and job.id
    assert job.state == JobState.PENDING
    stored = strategy.find_one(job.id)
    assert stored is not None and stored.state == JobState.PENDING and stored.data == "hello"


def test_job_completes_with_the_returned_result(
    strategy: CeleryJobQueueStrategy, queue: str, run: Any
) -> None:
    job = strategy.add(Job(queue_name=queue, data=None))
    run(queue, lambda j: "yay")
    done = wait_settled(strategy, job)
    assert done.state == JobState.COMPLETED
    assert done.result == "yay"
    assert done.progress == 100
    assert done.attempts == 1
    assert done.settled_at is not None and done.started_at is not None


def test_job_fails_with_the_message_of_a_plain_error(
    strategy: CeleryJobQueueStrategy, queue: str, run: Any
) -> None:
    def process(job: Job) -> None:
        raise Exception("uh oh")

    job = strategy.add(Job(queue_name=queue, data=None))
    run(queue, process)
    failed = wait_settled(strategy, job)
    assert failed.state == JobState.FAILED
    assert failed.error == "uh oh"
    assert failed.progress == 0


def test_job_fails_with_the_message_of_an_async_exception(
    strategy: CeleryJobQueueStrategy, queue: str, run: Any
) -> None:
    async def process(job: Job) -> None:
        await asyncio.sleep(0)
        raise ValueError("something bad happened")

    job = strategy.add(Job(queue_name=queue, data=None))
    run(queue, process)
    failed = wait_settled(strategy, job)
    assert failed.state == JobState.FAILED
    assert failed.error == "something bad happened"


def test_async_process_completes_on_one_loop_per_worker(
    strategy: CeleryJobQueueStrategy, queue: str, run: Any
) -> None:
    loops: list[int] = []

    async def process(job: Job) -> str:
        await asyncio.sleep(0.01)
        loops.append(id(asyncio.get_running_loop()))
        return f"async {job.data}"

    jobs = [strategy.add(Job(queue_name=queue, data=i)) for i in range(3)]
    run(queue, process)
    results = [wait_settled(strategy, job) for job in jobs]
    assert [r.result for r in results] == ["async 0", "async 1", "async 2"]
    assert len(set(loops)) == 1


def test_jobs_run_first_in_first_out_with_concurrency_one(
    strategy: CeleryJobQueueStrategy, queue: str, run: Any
) -> None:
    order: list[int] = []
    overlap = threading.Lock()

    def process(job: Job) -> None:
        assert overlap.acquire(blocking=False), "two jobs ran at once"
        try:
            order.append(job.data)
            time.sleep(0.05)
        finally:
            overlap.release()

    jobs = [strategy.add(Job(queue_name=queue, data=i)) for i in range(4)]
    run(queue, process)
    results = [wait_settled(strategy, job) for job in jobs]
    assert order == [0, 1, 2, 3]
    assert all(r.state == JobState.COMPLETED for r in results)
    for earlier, later in itertools.pairwise(results):
        assert earlier.settled_at is not None and later.started_at is not None
        assert earlier.settled_at <= later.started_at


def test_failing_job_retries_with_backoff_then_fails(
    strategy: CeleryJobQueueStrategy, queue: str, run: Any, backoff: BackoffRecorder
) -> None:
    attempts_seen: list[int] = []

    def process(job: Job) -> None:
        attempts_seen.append(job.attempts)
        raise RuntimeError(f"attempt {job.attempts} failed")

    job = strategy.add(Job(queue_name=queue, data=None, retries=2))
    run(queue, process)
    failed = wait_settled(strategy, job)
    assert failed.state == JobState.FAILED
    assert failed.error == "attempt 3 failed"
    assert failed.attempts == 3
    assert attempts_seen == [1, 2, 3]
    assert backoff.for_queue(queue) == [
        (queue, 1, job.id, JobState.RETRYING),
        (queue, 2, job.id, JobState.RETRYING),
    ]


def test_job_that_fails_once_then_succeeds_completes(
    strategy: CeleryJobQueueStrategy, queue: str, run: Any
) -> None:
    def process(job: Job) -> str:
        if job.attempts == 1:
            raise RuntimeError("flaky")
        return "second time lucky"

    job = strategy.add(Job(queue_name=queue, data=None, retries=1))
    run(queue, process)
    done = wait_settled(strategy, job)
    assert (done.state, done.result, done.attempts) == (JobState.COMPLETED, "second time lucky", 2)


def test_progress_set_inside_the_process_is_persisted(
    strategy: CeleryJobQueueStrategy, queue: str, run: Any
) -> None:
    release = threading.Event()

    def process(job: Job) -> str:
        job.set_progress(42)
        release.wait(30)
        return "done"

    job = strategy.add(Job(queue_name=queue, data=None))
    assert job.id is not None
    job_id = job.id
    run(queue, process)
    try:
        running = wait_job(strategy, job_id, lambda found: found.progress == 42, "progress 42")
        assert running.state == JobState.RUNNING
    finally:
        release.set()
    assert wait_settled(strategy, job).progress == 100


def test_stopped_queue_keeps_its_jobs_until_started_again(
    strategy: CeleryJobQueueStrategy, queue: str, run: Any
) -> None:
    processed: list[Any] = []

    def process(job: Job) -> None:
        processed.append(job.data)

    strategy.start(queue, process)
    strategy.stop(queue, process)
    jobs = [strategy.add(Job(queue_name=queue, data=i)) for i in range(5)]
    time.sleep(2)  # give a wrongly still-running consumer the chance to take them
    assert processed == []
    stored = [strategy.find_one(j.id or "") for j in jobs]
    assert [found.state if found else None for found in stored] == [JobState.PENDING] * 5
    run(queue, process)
    assert all(wait_settled(strategy, j).state == JobState.COMPLETED for j in jobs)
    assert sorted(processed) == [0, 1, 2, 3, 4]


def test_start_is_idempotent_per_queue_and_process(
    strategy: CeleryJobQueueStrategy, queue: str, run: Any
) -> None:
    calls: list[Any] = []

    def process(job: Job) -> None:
        calls.append(job.data)

    run(queue, process)
    run(queue, process)
    job = strategy.add(Job(queue_name=queue, data="once"))
    wait_settled(strategy, job)
    assert calls == ["once"]


def test_unknown_job_id_gives_none(strategy: CeleryJobQueueStrategy) -> None:
    assert strategy.find_one("no-such-job") is None


@pytest.mark.parametrize("name", ["", "has space", "bad/slash", "é"])
def test_malformed_queue_name_is_refused_at_add_and_start(
    strategy: CeleryJobQueueStrategy, name: str
) -> None:
    from adapter import InvalidQueueNameError

    with pytest.raises(InvalidQueueNameError, match="queue name"):
        strategy.add(Job(queue_name=name, data=None))
    with pytest.raises(InvalidQueueNameError, match="queue name"):
        strategy.start(name, lambda job: None)


def test_adding_an_idempotency_key_twice_returns_the_first_job(
    strategy: CeleryJobQueueStrategy, queue: str, run: Any
) -> None:
    calls: list[Any] = []
    first = strategy.add(Job(queue_name=queue, data="first"), idempotency_key="order-42")
    again = strategy.add(Job(queue_name=queue, data="second"), idempotency_key="order-42")
    other = strategy.add(Job(queue_name=queue, data="other"), idempotency_key="order-43")
    assert again.id == first.id and again.data == "first"
    assert other.id != first.id
    run(queue, lambda job: calls.append(job.data))
    wait_settled(strategy, first)
    wait_settled(strategy, other)
    assert sorted(calls) == ["first", "other"]
    later = strategy.add(Job(queue_name=queue, data="third"), idempotency_key="order-42")
    assert (later.id, later.state, later.data) == (first.id, JobState.COMPLETED, "first")


def test_a_burst_of_jobs_runs_in_the_order_it_was_added(
    strategy: CeleryJobQueueStrategy, queue: str, run: Any
) -> None:
    order: list[int] = []
    jobs = [strategy.add(Job(queue_name=queue, data=i)) for i in range(40)]
    run(queue, lambda job: order.append(job.data))
    wait_settled(strategy, jobs[-1])
    assert order == list(range(40))
