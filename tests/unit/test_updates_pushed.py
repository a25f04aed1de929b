"""When ``updates()`` looks: at once, when its watch is woken, and at every poll (memory store).

The memory store wakes a job's watches on every write, as Redis and PostgreSQL do through their
servers; a finder without ``watch_job`` is never woken and polls, as SQLite does. Poll
intervals of 30 s against deadlines of 10 s tell a woken stream from a polled one.
"""

from __future__ import annotations

import threading

from adapter.job import Job, JobState
from adapter.store.changes import Watch
from adapter.store.memory import MemoryJobStore
from adapter.subscribable import TIMED_OUT_RESULT, SubscribableJob
from tests.factories import make_job

NEVER_POLLED_S = 30.0
DEADLINE_S = 10.0


class PollingFinder:
    """A finder over a store that signals its first read; without ``watch_job``, it polls."""

    def __init__(self, store: MemoryJobStore) -> None:
        self.store = store
        self.read = threading.Event()

    def find_one(self, job_id: str) -> Job | None:
        found = self.store.get(job_id)
        self.read.set()
        return found


class StoreFinder(PollingFinder):
    """The same finder with the store's watches (the stream's watch is on before a read)."""

    def watch_job(self, job_id: str) -> Watch:
        return self.store.watch(job_id)

    def peek_job(self, job_id: str) -> Job | None:
        return self.find_one(job_id)


def _after_first_read(finder: PollingFinder, write: threading.Thread) -> None:
    def start_after() -> None:
        if finder.read.wait(DEADLINE_S):
            write.start()

    threading.Thread(target=start_after).start()


def test_a_settled_job_is_reported_at_once() -> None:
    store = MemoryJobStore()
    job = make_job()
    store.insert(job)
    store.update(job.model_copy(update={"state": JobState.COMPLETED, "result": 7}))
    updates = SubscribableJob.wrap(job, StoreFinder(store)).updates(NEVER_POLLED_S)

    assert [(u.state, u.result) for u in updates] == [(JobState.COMPLETED, 7)]


def test_a_write_wakes_the_stream_long_before_its_next_poll() -> None:
    store = MemoryJobStore()
    job = make_job()
    store.insert(job)
    finder = StoreFinder(store)
    settle = threading.Thread(
        target=store.update, args=(job.model_copy(update={"state": JobState.COMPLETED}),)
    )
    _after_first_read(finder, settle)
    updates = SubscribableJob.wrap(job, finder).updates(NEVER_POLLED_S, deadline=DEADLINE_S)

    assert [u.state for u in updates] == [JobState.COMPLETED]
    assert not updates.timed_out


def test_before_the_first_poll_an_unsettled_change_is_not_emitted_so_the_timeout_races_it() -> None:
    store = MemoryJobStore()
    job = make_job(data="blocked")
    store.insert(job)
    finder = StoreFinder(store)
    _after_first_read(finder, threading.Thread(target=store.claim, args=(job,)))
    updates = SubscribableJob.wrap(job, finder).updates(poll_interval=0.5, timeout=0.2)

    assert [(u.state, u.result) for u in updates] == [(JobState.RUNNING, TIMED_OUT_RESULT)]
    assert updates.timed_out


def test_without_a_watch_the_stream_polls() -> None:
    store = MemoryJobStore()
    job = make_job()
    store.insert(job)
    finder = PollingFinder(store)
    settle = threading.Thread(
        target=store.update, args=(job.model_copy(update={"state": JobState.FAILED}),)
    )
    _after_first_read(finder, settle)
    updates = SubscribableJob.wrap(job, finder).updates(0.05, error_on_fail=False, deadline=10)

    assert [u.state for u in updates] == [JobState.FAILED]
