"""The scheduling part of the store contract (``adapter.store.scheduling``) on every store.

Due marks (taken once, set again by an early claim, cleared by a start, ignored once
cancelled), ``mark_due`` (reschedule) and ``add_unique`` (keys per queue, held while waiting,
replace for debounce, one winner among many threads).
"""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest

from adapter.errors import DuplicateJobError
from adapter.job import JobState, utcnow
from adapter.store.base import JobStore
from tests.contract import test_store_contract as contract
from tests.factories import make_job

store = contract.store
postgres_store = contract.postgres_store
redis_prefix = contract.redis_prefix
redis_store = contract.redis_store


def test_a_due_job_is_taken_once_and_a_later_one_at_its_time(store: JobStore) -> None:
    now = utcnow()
    due = make_job(ready_at=now - timedelta(seconds=1))
    later = make_job(ready_at=now + timedelta(hours=1))
    plain = make_job()
    for job in (due, later, plain):
        store.insert(job)
    assert [job.id for job in store.take_due(now, 100)] == [due.id]
    assert store.take_due(now, 100) == []
    taken = store.take_due(now + timedelta(hours=2), 100)
    assert [(job.id, job.state) for job in taken] == [(later.id, JobState.PENDING)]


def test_take_due_takes_the_earliest_first_up_to_its_limit(store: JobStore) -> None:
    now = utcnow()
    jobs = [make_job(ready_at=now - timedelta(seconds=n)) for n in range(5)]
    store.insert_many(jobs)
    first = store.take_due(now, 2)
    assert [job.id for job in first] == [jobs[4].id, jobs[3].id]
    assert len(store.take_due(now, 100)) == 3


def test_an_early_claim_starts_nothing_and_marks_the_job_due_again(store: JobStore) -> None:
    now = utcnow()
    job = make_job(ready_at=now + timedelta(hours=1))
    store.insert(job)
    assert [taken.id for taken in store.take_due(now + timedelta(hours=2), 10)] == [job.id]
    assert store.claim(job) is None
    stored = store.get(str(job.id))
    assert stored is not None and (stored.state, stored.attempts) == (JobState.PENDING, 0)
    assert [taken.id for taken in store.take_due(now + timedelta(hours=2), 10)] == [job.id]


def test_an_early_message_of_an_unknown_job_records_it_due(store: JobStore) -> None:
    job = make_job(ready_at=utcnow() + timedelta(hours=1))
    assert store.claim(job) is None
    assert [taken.id for taken in store.take_due(utcnow() + timedelta(hours=2), 10)] == [job.id]


def test_a_start_clears_the_mark_and_a_cancelled_job_is_never_taken(store: JobStore) -> None:
    past = utcnow() - timedelta(seconds=1)
    started, cancelled = make_job(ready_at=past), make_job(ready_at=past)
    store.insert_many([started, cancelled])
    claimed = store.claim(started)
    assert claimed is not None and claimed.state is JobState.RUNNING
    store.cancel(str(cancelled.id))
    assert store.take_due(utcnow(), 10) == []


def test_mark_due_reschedules_a_waiting_job_only(store: JobStore) -> None:
    now = utcnow()
    waiting, running = make_job(ready_at=now + timedelta(hours=1)), make_job()
    store.insert_many([waiting, running])
    store.claim(running)
    moved = store.mark_due(str(waiting.id), now + timedelta(hours=3))
    assert moved is not None and moved.ready_at == now + timedelta(hours=3)
    assert store.take_due(now + timedelta(hours=2), 10) == []
    assert [job.id for job in store.take_due(now + timedelta(hours=4), 10)] == [waiting.id]
    assert store.mark_due(str(running.id), now) is None
    assert store.mark_due("no-such-job", now) is None


def test_a_unique_key_returns_the_waiting_job_until_it_starts(store: JobStore) -> None:
    first = make_job(queue_name="u", unique_key="sku-1", data=1)
    stored, added = store.add_unique(first, replace=False)
    assert added and stored.id == first.id
    again, added = store.add_unique(
        make_job(queue_name="u", unique_key="sku-1", data=2), replace=False
    )
    assert (added, again.id, again.data) == (False, first.id, 1)
    other_queue, added = store.add_unique(
        make_job(queue_name="v", unique_key="sku-1"), replace=False
    )
    assert added and other_queue.id != first.id
    store.claim(first)
    after_start, added = store.add_unique(
        make_job(queue_name="u", unique_key="sku-1"), replace=False
    )
    assert added and after_start.id != first.id


def test_replace_moves_the_waiting_job_s_data_and_time(store: JobStore) -> None:
    now = utcnow()
    first = make_job(queue_name="u", unique_key="k", data={"n": 1}, ready_at=now)
    store.add_unique(first, replace=True)
    later = now + timedelta(hours=1)
    kept, added = store.add_unique(
        make_job(queue_name="u", unique_key="k", data={"n": 2}, ready_at=later), replace=True
    )
    assert (added, kept.id, kept.data, kept.ready_at) == (False, first.id, {"n": 2}, later)
    assert store.take_due(now + timedelta(minutes=1), 10) == []
    assert [job.id for job in store.take_due(later, 10)] == [first.id]


def test_add_unique_refuses_a_taken_id(store: JobStore) -> None:
    taken = make_job()
    store.insert(taken)
    with pytest.raises(DuplicateJobError):
        store.add_unique(make_job(id=taken.id, unique_key="fresh"), replace=False)


def test_one_job_per_key_when_many_threads_add_it_at_once(store: JobStore) -> None:
    start = threading.Barrier(8)
    ids: set[str] = set()
    lock = threading.Lock()

    def add() -> None:
        start.wait(timeout=30)
        for n in range(10):
            job, _ = store.add_unique(
                make_job(queue_name="u", unique_key="k", data=n), replace=True
            )
            with lock:
                ids.add(str(job.id))

    threads = [threading.Thread(target=add) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert len(ids) == 1
    assert store.find_many({"filter": {"uniqueKey": {"eq": "k"}}}).total_items == 1


def test_the_store_s_clock_is_utc_and_now(store: JobStore) -> None:
    before = utcnow()
    clock = store.now()
    assert clock.utcoffset() == timedelta(0)
    assert before - timedelta(seconds=5) < clock < utcnow() + timedelta(seconds=5)
