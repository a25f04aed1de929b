"""What a notification tells ``updates()``: a settled job it carries needs no read again, and
an unsettled state before the first poll needs none either (PostgreSQL's ``Change``).

The stream's watch is fed by hand here, as the PostgreSQL listener feeds it; the finder counts
the reads. Poll intervals of 30 s against deadlines of 10 s keep polls out of it.
"""

from __future__ import annotations

import threading

from adapter.job import Job, JobState
from adapter.store.changes import Change, ChangeHub, Watch
from adapter.store.memory import MemoryJobStore
from adapter.subscribable import SubscribableJob
from tests.factories import make_job

NEVER_POLLED_S = 30.0
DEADLINE_S = 10.0


class CountingWatch(Watch):
    """A watch that counts how often the stream asked it what it was told."""

    def __init__(self, hub: ChangeHub, job_id: str) -> None:
        super().__init__(hub, job_id)
        self.asked = threading.Semaphore(0)

    def take_change(self) -> Change | None:
        change = super().take_change()
        self.asked.release()
        return change


class TellingFinder:
    """A finder over a memory store whose watch the test notifies by hand; it counts reads."""

    def __init__(self, store: MemoryJobStore) -> None:
        self.store = store
        self.reads = 0
        self.first_read = threading.Event()
        self.watch: CountingWatch | None = None

    def find_one(self, job_id: str) -> Job | None:
        self.reads += 1
        self.first_read.set()
        return self.store.get(job_id)

    def peek_job(self, job_id: str) -> Job | None:
        return self.find_one(job_id)

    def watch_job(self, job_id: str) -> Watch:
        self.watch = CountingWatch(ChangeHub(), job_id)
        return self.watch


def _tell_after_first_read(
    finder: TellingFinder, changes: list[Change], before: threading.Thread | None = None
) -> threading.Thread:
    """Notify each change once the stream has taken the one before (the first after a read).

    ``before`` runs (and ends) between the first read and the first change: the write told.
    """

    def tell() -> None:
        assert finder.first_read.wait(DEADLINE_S)
        watch = finder.watch
        assert watch is not None
        assert watch.asked.acquire(timeout=DEADLINE_S)  # the first read asked too
        if before is not None:
            before.start()
            before.join()
        for change in changes:
            watch.notify(change)
            assert watch.asked.acquire(timeout=DEADLINE_S)

    teller = threading.Thread(target=tell)
    teller.start()
    return teller


def test_a_settled_job_the_notification_carries_is_emitted_without_reading_it_again() -> None:
    store = MemoryJobStore()
    job = make_job()
    store.insert(job)
    finder = TellingFinder(store)
    settled = job.model_copy(update={"state": JobState.COMPLETED, "result": 42})
    teller = _tell_after_first_read(finder, [Change(JobState.COMPLETED, settled)])

    updates = SubscribableJob.wrap(job, finder).updates(NEVER_POLLED_S, deadline=DEADLINE_S)

    assert [(u.state, u.result) for u in updates] == [(JobState.COMPLETED, 42)]
    teller.join(DEADLINE_S)
    assert finder.reads == 1  # the first read only


def test_an_unsettled_state_told_before_the_first_poll_costs_no_read() -> None:
    store = MemoryJobStore()
    job = make_job()
    store.insert(job)
    finder = TellingFinder(store)
    settled = job.model_copy(update={"state": JobState.FAILED, "error": "boom"})
    changes = [Change(JobState.RUNNING), Change(JobState.FAILED, settled)]
    teller = _tell_after_first_read(finder, changes)

    updates = SubscribableJob.wrap(job, finder).updates(
        NEVER_POLLED_S, deadline=DEADLINE_S, error_on_fail=False
    )

    assert [(u.state, u.error) for u in updates] == [(JobState.FAILED, "boom")]
    teller.join(DEADLINE_S)
    assert finder.reads == 1


def test_a_settled_state_told_without_its_job_is_read_from_the_store() -> None:
    store = MemoryJobStore()
    job = make_job()
    store.insert(job)
    finder = TellingFinder(store)
    store_settled = threading.Thread(
        target=store.update,
        args=(job.model_copy(update={"state": JobState.COMPLETED, "result": "stored"}),),
    )
    teller = _tell_after_first_read(finder, [Change(JobState.COMPLETED)], before=store_settled)

    updates = SubscribableJob.wrap(job, finder).updates(NEVER_POLLED_S, deadline=DEADLINE_S)

    assert [u.result for u in updates] == ["stored"]  # a job too big to carry: read
    teller.join(DEADLINE_S)
    assert finder.reads == 2
