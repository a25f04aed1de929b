"""``set_progress`` in a tight loop costs a few store writes, and the latest value is written."""

from __future__ import annotations

import threading
import uuid

from adapter.backoff import constant_backoff
from adapter.errors import StoreError
from adapter.job import Job, JobState
from adapter.lifecycle import Lifecycle, Liveness
from adapter.running import RunningJobs
from adapter.store.memory import MemoryJobStore
from tests.support import wait_for


class CountingStore(MemoryJobStore):
    """The memory store, counting progress writes."""

    def __init__(self) -> None:
        super().__init__()
        self.progress_writes = 0

    def set_progress(self, job_id: str, progress: float) -> bool:
        self.progress_writes += 1
        return super().set_progress(job_id, progress)


def stored_at(store: MemoryJobStore, job_id: str, progress: float) -> Job | None:
    """The stored job once its progress is ``progress``, else None."""
    found = store.get(job_id)
    return found if found is not None and found.progress == progress else None


def lifecycle_on(store: MemoryJobStore) -> Lifecycle:
    return Lifecycle(store, Liveness(), constant_backoff(1000), RunningJobs(store))


def test_a_tight_loop_of_progress_calls_makes_a_few_writes() -> None:
    store = CountingStore()
    lifecycle = lifecycle_on(store)
    job = lifecycle.claim(Job(id=uuid.uuid4().hex, queue_name="progress", data=None))
    assert job is not None

    def process(running: Job) -> None:
        for n in range(20_000):
            running.set_progress(n / 200)

    outcome = lifecycle.attempt(job, process)

    assert outcome.job is not None and outcome.job.state == JobState.COMPLETED
    assert 1 <= store.progress_writes < 100  # one per call would be 20,000


def test_the_latest_progress_is_written_while_the_job_still_runs() -> None:
    store = CountingStore()
    lifecycle = lifecycle_on(store)
    job = lifecycle.claim(Job(id=uuid.uuid4().hex, queue_name="progress", data=None))
    assert job is not None
    release = threading.Event()

    def process(running: Job) -> None:
        for percent in (10, 20, 42):  # within one write interval: only 10 is written at once
            running.set_progress(percent)
        release.wait(30)

    worker = threading.Thread(target=lifecycle.attempt, args=(job, process))
    worker.start()
    try:
        stored = wait_for(lambda: stored_at(store, job.id or "", 42), "progress 42 in the store")
        assert stored.state == JobState.RUNNING
    finally:
        release.set()
        worker.join(30)
    assert store.progress_writes == 2  # 10 at once, then the latest (42) at the next round


class BusyOnceStore(CountingStore):
    """Refuses the first progress write, as a locked SQLite file does."""

    def set_progress(self, job_id: str, progress: float) -> bool:
        if self.progress_writes == 0:
            self.progress_writes += 1
            raise StoreError("job store sqlite:///jobs.sqlite3 failed: database is locked")
        return super().set_progress(job_id, progress)


def test_a_busy_store_fails_no_progress_call_and_the_value_is_written_later() -> None:
    store = BusyOnceStore()
    lifecycle = lifecycle_on(store)
    job = lifecycle.claim(Job(id=uuid.uuid4().hex, queue_name="progress", data=None))
    assert job is not None
    release = threading.Event()
    outcomes = []

    def process(running: Job) -> str:
        running.set_progress(42)  # refused by the store: the process goes on
        release.wait(30)
        return "done"

    worker = threading.Thread(target=lambda: outcomes.append(lifecycle.attempt(job, process)))
    worker.start()
    try:
        wait_for(lambda: stored_at(store, job.id or "", 42), "progress 42 in the store")
    finally:
        release.set()
        worker.join(30)
    assert outcomes[0].job is not None and outcomes[0].job.state == JobState.COMPLETED
