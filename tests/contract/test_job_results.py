"""``wait_for_result`` on every broker and store, and ``updates()`` woken by the store's pushes.

With a poll interval of 30 s and a deadline of 10 s, a stream can only see its job settle by
being woken: that is how these tests tell a pushed update from a polled one, without timing
anything. SQLite pushes nothing, so the pushed tests do not apply to its pairs.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest

from adapter import (
    CeleryJobQueueStrategy,
    Job,
    JobCancelledError,
    JobFailedError,
    JobResultTimeoutError,
    JobState,
)
from adapter.store.changes import Watch
from adapter.subscribable import JobUpdate, JobUpdates, SubscribableJob
from tests.contract.conftest import Pair
from tests.support import wait_for

#: A poll interval no test waits for: only a pushed change ends these streams in time.
NEVER_POLLED_S = 30.0
#: Bound of every stream here.
DEADLINE_S = 10.0


def test_wait_for_result_returns_the_result_of_a_completed_job(
    strategy: CeleryJobQueueStrategy, queue: str, run: Any
) -> None:
    job = strategy.add(Job(queue_name=queue, data={"n": 20}))
    run(queue, lambda job: job.data["n"] + 1)
    assert isinstance(job, SubscribableJob)
    assert job.wait_for_result(timeout=DEADLINE_S, poll_interval=0.05) == 21


def test_wait_for_result_raises_the_error_of_a_failed_job(
    strategy: CeleryJobQueueStrategy, queue: str, run: Any
) -> None:
    def process(job: Job) -> None:
        raise RuntimeError("no paper")

    job = strategy.add(Job(queue_name=queue, data=None))
    run(queue, process)
    assert isinstance(job, SubscribableJob)
    with pytest.raises(JobFailedError, match="no paper"):
        job.wait_for_result(timeout=DEADLINE_S, poll_interval=0.05)


def test_wait_for_result_of_a_cancelled_job_raises_job_cancelled_error(
    strategy: CeleryJobQueueStrategy, queue: str
) -> None:
    job = strategy.add(Job(queue_name=queue, data=None))  # nobody runs this queue
    strategy.cancel_job(str(job.id))
    assert isinstance(job, SubscribableJob)
    with pytest.raises(JobCancelledError):
        job.wait_for_result(timeout=DEADLINE_S, poll_interval=0.05)


def test_wait_for_result_of_a_job_nobody_runs_times_out(
    strategy: CeleryJobQueueStrategy, queue: str
) -> None:
    job = strategy.add(Job(queue_name=queue, data=None))
    assert isinstance(job, SubscribableJob)
    with pytest.raises(JobResultTimeoutError, match=str(job.id)):
        job.wait_for_result(timeout=0.2, poll_interval=0.05)
    assert isinstance(JobResultTimeoutError("x"), TimeoutError)


class FirstReadSignal:
    """The strategy as a finder that says when a stream first read its job (its watch is on)."""

    def __init__(self, strategy: CeleryJobQueueStrategy) -> None:
        self.strategy = strategy
        self.read = threading.Event()

    def find_one(self, job_id: str) -> Job | None:
        found = self.strategy.find_one(job_id)
        self.read.set()
        return found

    def watch_job(self, job_id: str) -> Watch:
        return self.strategy.watch_job(job_id)

    def peek_job(self, job_id: str) -> Job | None:
        found = self.strategy.peek_job(job_id)
        self.read.set()
        return found


def _blocked_job(
    strategy: CeleryJobQueueStrategy, queue: str, run: Any, release: threading.Event
) -> Job:
    """Add a job whose process returns "done" once ``release`` is set; return it RUNNING."""
    run(queue, lambda job: "done" if release.wait(DEADLINE_S * 3) else "never released")
    job = strategy.add(Job(queue_name=queue, data=None))
    wait_for(
        lambda: (found := strategy.find_one(str(job.id))) and found.state == JobState.RUNNING,
        "the job running",
    )
    return job


def _release_after_first_read(finder: FirstReadSignal, release: threading.Event) -> None:
    if finder.read.wait(DEADLINE_S):
        release.set()


def _needs_pushes(pair: Pair) -> None:
    if pair.store == "sqlite":
        pytest.skip("SQLite pushes no changes: its streams poll (tests above)")


def _pushed_stream(
    pair: Pair, strategy: CeleryJobQueueStrategy, queue: str, run: Any
) -> JobUpdates:
    """A blocked job's stream that no poll can end in time; the job is let go once it reads."""
    _needs_pushes(pair)
    release = threading.Event()
    job = _blocked_job(strategy, queue, run, release)
    finder = FirstReadSignal(strategy)
    updates = SubscribableJob.wrap(job, finder).updates(NEVER_POLLED_S, deadline=DEADLINE_S)
    threading.Thread(target=_release_after_first_read, args=(finder, release)).start()
    return updates


def test_a_pushed_update_ends_the_stream_long_before_its_next_poll(
    pair: Pair, strategy: CeleryJobQueueStrategy, queue: str, run: Any
) -> None:
    updates = _pushed_stream(pair, strategy, queue, run)

    seen = list(updates)

    assert not updates.timed_out
    assert [(u.state, u.result) for u in seen] == [(JobState.COMPLETED, "done")]


def test_a_pushed_update_reaches_async_for(
    pair: Pair, strategy: CeleryJobQueueStrategy, queue: str, run: Any
) -> None:
    updates = _pushed_stream(pair, strategy, queue, run)

    async def follow() -> list[JobUpdate]:
        return [update async for update in updates]

    seen = asyncio.run(follow())

    assert not updates.timed_out
    assert [(u.state, u.result) for u in seen] == [(JobState.COMPLETED, "done")]
