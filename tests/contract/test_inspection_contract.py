"""Inspection on every broker: cancel_job, updates(), find_many through the strategy."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import pytest

from adapter import CeleryJobQueueStrategy, Job, JobCancelledError, JobFailedError, JobState
from adapter.subscribable import TIMED_OUT_RESULT, JobUpdate, SubscribableJob
from tests.support import wait_job, wait_settled


def test_cancelled_pending_job_never_runs(
    strategy: CeleryJobQueueStrategy, queue: str, run: Any
) -> None:
    ran: list[Any] = []
    doomed = strategy.add(Job(queue_name=queue, data="doomed"))
    kept = strategy.add(Job(queue_name=queue, data="kept"))
    cancelled = strategy.cancel_job(doomed.id or "")
    assert cancelled is not None
    assert (cancelled.state, cancelled.is_settled) == (JobState.CANCELLED, True)
    run(queue, lambda job: ran.append(job.data))
    assert wait_settled(strategy, kept).state == JobState.COMPLETED
    assert ran == ["kept"]
    final = strategy.find_one(doomed.id or "")
    assert final is not None and final.state == JobState.CANCELLED and final.attempts == 0


def test_running_job_sees_its_cancellation_and_ends_cancelled(
    strategy: CeleryJobQueueStrategy, queue: str, run: Any
) -> None:
    observed: list[str] = []

    def process(job: Job) -> str:
        job.set_progress(10)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                job.raise_if_cancelled()
            except JobCancelledError as err:
                observed.append(str(err))
                raise
            time.sleep(0.05)
        return "never cancelled"

    job = strategy.add(Job(queue_name=queue, data=None, retries=3))
    job_id = job.id or ""
    run(queue, process)
    wait_job(strategy, job_id, lambda found: found.progress == 10, "running with progress 10")
    cancelled = strategy.cancel_job(job_id)
    assert cancelled is not None and cancelled.state == JobState.CANCELLED
    assert cancelled.settled_at is not None and cancelled.is_settled
    from tests.support import wait_for

    wait_for(lambda: observed, "the process to observe its cancellation")
    assert observed == [f"job {job_id} was cancelled"]
    time.sleep(1)  # a wrong retry would have claimed it again by now
    final = strategy.find_one(job_id)
    assert final is not None and (final.state, final.attempts) == (JobState.CANCELLED, 1)


def test_cancelling_a_settled_job_changes_nothing(
    strategy: CeleryJobQueueStrategy, queue: str, run: Any
) -> None:
    job = strategy.add(Job(queue_name=queue, data=None))
    run(queue, lambda job: "done")
    done = wait_settled(strategy, job)
    again = strategy.cancel_job(job.id or "")
    assert again is not None
    assert (again.state, again.result, again.settled_at) == (
        JobState.COMPLETED,
        "done",
        done.settled_at,
    )


def test_cancelling_an_unknown_job_gives_none(strategy: CeleryJobQueueStrategy) -> None:
    assert strategy.cancel_job("no-such-job") is None


def four_steps(job: Job) -> str:
    """Report 25, 50, 75 and 100 percent over about half a second (Vendure's e2e job)."""
    for percent in (25, 50, 75, 100):
        time.sleep(0.15)
        job.set_progress(percent)
    return "completed"


def test_updates_emit_several_times_until_completed(
    strategy: CeleryJobQueueStrategy, queue: str, run: Any
) -> None:
    job = strategy.add(Job(queue_name=queue, data={"duration": 500}))
    assert isinstance(job, SubscribableJob)
    run(queue, four_steps)
    updates = list(job.updates(poll_interval=0.05, timeout=10))
    assert len(updates) >= 3
    assert updates[-1].state == JobState.COMPLETED and updates[-1].result == "completed"
    assert all(isinstance(update, JobUpdate) for update in updates)
    pairs = [(u.state, u.progress) for u in updates]
    assert len(set(pairs)) == len(pairs), "an update was emitted without a change"


def test_updates_can_be_followed_with_async_for(
    strategy: CeleryJobQueueStrategy, queue: str, run: Any
) -> None:
    job = strategy.add(Job(queue_name=queue, data=None))
    run(queue, four_steps)

    async def follow() -> list[JobUpdate]:
        return [update async for update in job.updates(poll_interval=0.05, timeout=10)]

    updates = asyncio.run(follow())
    assert updates[-1].state == JobState.COMPLETED and updates[-1].result == "completed"


def test_updates_of_a_blocked_job_time_out_with_vendures_update(
    strategy: CeleryJobQueueStrategy, queue: str, run: Any
) -> None:
    release = threading.Event()
    job = strategy.add(Job(queue_name=queue, data="blocked"))
    run(queue, lambda job: release.wait(30))
    try:
        updates = list(job.updates(poll_interval=0.2, timeout=0.1))
    finally:
        release.set()
    assert len(updates) == 1
    assert updates[0].state == JobState.RUNNING
    assert updates[0].result == TIMED_OUT_RESULT
    assert updates[0].data == "blocked"


def test_updates_of_a_failed_job_raise_or_emit(
    strategy: CeleryJobQueueStrategy, queue: str, run: Any
) -> None:
    def process(job: Job) -> None:
        raise RuntimeError("it broke")

    job = strategy.add(Job(queue_name=queue, data=None))
    run(queue, process)
    with pytest.raises(JobFailedError, match="it broke"):
        list(job.updates(poll_interval=0.05, timeout=10))
    updates = list(job.updates(poll_interval=0.05, timeout=10, error_on_fail=False))
    assert updates[-1].state == JobState.FAILED and updates[-1].error == "it broke"


def test_find_many_takes_vendures_camel_case_options(
    strategy: CeleryJobQueueStrategy, queue: str, run: Any
) -> None:
    jobs = [strategy.add(Job(queue_name=queue, data=i)) for i in range(3)]
    run(queue, lambda job: job.data)
    for job in jobs:
        wait_settled(strategy, job)
    page = strategy.find_many(
        {
            "filter": {"queueName": {"eq": queue}, "state": {"eq": "COMPLETED"}},
            "sort": {"createdAt": "DESC"},
            "take": 2,
        }
    )
    assert page.total_items == 3
    assert [job.data for job in page.items] == [2, 1]
    by_id = strategy.find_many_by_id([jobs[2].id or "", "missing", jobs[0].id or ""])
    assert [job.data for job in by_id] == [2, 0]
    assert strategy.remove_settled_jobs([queue]) == 3
    assert strategy.find_one(jobs[0].id or "") is None
