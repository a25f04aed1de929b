"""The scheduled-task store and retention, on every store: memory, SQLite, PostgreSQL, Redis.

``claim`` is the compare-and-set that makes a tick run once: tested from many threads at once
and across processes' stores; leases, requested runs, the bounded history, and retention by
count and by age, per queue and state, never touching jobs still to run.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from adapter.job import Job, JobState, utcnow
from adapter.retention import RetentionRule, apply_rules, parse_rules
from adapter.store.base import JobStore
from adapter.store.schedules import Claim, RunRecord, ScheduleStore
from tests.contract.test_store_contract import (  # noqa: F401 - fixtures
    SHARED_STORES,
    empty_store,
    postgres_store,
    redis_prefix,
    redis_store,
)
from tests.factories import make_job

T0 = datetime(2026, 1, 1, 3, 0, tzinfo=UTC)


@pytest.fixture(params=["memory", *SHARED_STORES])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[JobStore]:
    """An empty job store of each kind."""
    yield from empty_store(request.param, request, tmp_path)


@pytest.fixture
def schedules(store: JobStore) -> ScheduleStore:
    return store.schedules


@pytest.fixture
def task_id() -> str:
    """A task id of this test's own (PostgreSQL's tables live for the session)."""
    return f"task-{uuid.uuid4().hex[:8]}"


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def claim(schedules: ScheduleStore, task_id: str, tick: float | None, owner: str,
          now: float, lease: float = 10, exclusive: bool = True) -> bool:  # fmt: skip
    bid = Claim(
        task_id, None if tick is None else at(tick), owner, at(now), at(now + lease), exclusive
    )
    return schedules.claim(bid)


def test_a_tick_is_claimed_once_and_later_ticks_after_it(
    schedules: ScheduleStore, task_id: str
) -> None:
    schedules.register(task_id, at(0))
    schedules.register(task_id, at(100))  # registered already: kept as it was
    assert not claim(schedules, task_id, 0, "a", now=0.1)  # the tick it was registered at
    assert claim(schedules, task_id, 2, "a", now=2.1, exclusive=False)
    assert not claim(schedules, task_id, 2, "b", now=2.2, exclusive=False)
    assert not claim(schedules, task_id, 1, "b", now=2.3, exclusive=False)  # an older tick
    assert claim(schedules, task_id, 4, "b", now=4.1, exclusive=False)
    record = schedules.records()[task_id]
    assert (record.last_tick, record.lease_owner, record.lease_until) == (at(4), "b", at(14.1))
    assert not claim(schedules, "never-registered", 4, "b", now=4.1)


def test_many_threads_claiming_one_tick_take_it_once(
    schedules: ScheduleStore, task_id: str
) -> None:
    schedules.register(task_id, at(0))
    barrier, won = threading.Barrier(8), []

    def contender(n: int) -> None:
        barrier.wait()
        if claim(schedules, task_id, 2, f"w{n}", now=2, exclusive=False):
            won.append(n)

    threads = [threading.Thread(target=contender, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(won) == 1


def test_an_exclusive_claim_waits_for_the_lease_to_end_or_expire(
    schedules: ScheduleStore, task_id: str
) -> None:
    schedules.register(task_id, at(0))
    assert claim(schedules, task_id, 2, "a", now=2, lease=3)
    assert not claim(schedules, task_id, 4, "b", now=4)  # a's lease runs to 5
    assert schedules.renew(task_id, "a", at(7))
    assert not schedules.renew(task_id, "b", at(99))
    assert not claim(schedules, task_id, 6, "b", now=6.5)
    assert claim(schedules, task_id, 8, "b", now=8)  # a died: its lease ended at 7
    assert schedules.records()[task_id].running(at(8.5))
    assert not schedules.renew(task_id, "a", at(20))


def test_finish_frees_the_lease_and_keeps_a_bounded_history(
    schedules: ScheduleStore, task_id: str
) -> None:
    schedules.register(task_id, at(0))
    for n in range(1, 5):
        assert claim(schedules, task_id, 2 * n, f"o{n}", now=2 * n)
        error = "boom" if n == 4 else None
        result = None if error else f'{{"n": {n}}}'
        schedules.finish(
            RunRecord(task_id, at(2 * n), f"o{n}", at(2 * n), at(2 * n + 1), result, error), keep=3
        )
    record = schedules.records()[task_id]
    assert record.lease_owner is None and not record.running(at(9))
    assert (record.last_result, record.last_error, record.last_finished_at) == (None, "boom", at(9))
    history = schedules.history(task_id)
    assert [run.tick for run in history] == [at(8), at(6), at(4)]
    assert history[1] == RunRecord(task_id, at(6), "o3", at(6), at(7), '{"n": 3}', None)


def test_a_requested_run_is_claimed_once_even_when_disabled(
    schedules: ScheduleStore, task_id: str
) -> None:
    schedules.register(task_id, at(0))
    assert schedules.set_enabled(task_id, False)
    assert not claim(schedules, task_id, 2, "a", now=2)
    assert not claim(schedules, task_id, None, "a", now=2)  # nothing requested
    assert schedules.request_run(task_id, at(2))
    assert claim(schedules, task_id, None, "a", now=2.5)
    assert not claim(schedules, task_id, None, "b", now=2.6, exclusive=False)
    record = schedules.records()[task_id]
    assert (record.enabled, record.run_requested_at, record.last_tick) == (False, None, at(0))
    assert not schedules.set_enabled("never-registered", True)
    assert not schedules.request_run("never-registered", at(2))


def test_now_is_the_stores_clock(schedules: ScheduleStore) -> None:
    assert abs(schedules.now() - utcnow()) < timedelta(minutes=5)
    assert schedules.now().tzinfo is not None


def stocked(store: JobStore, queue: str, state: JobState, count: int, start: datetime) -> list[Job]:
    jobs = [
        make_job(queue_name=queue, state=state, created_at=start + timedelta(minutes=n),
                 settled_at=None if state == JobState.PENDING else start + timedelta(minutes=n))
        for n in range(count)
    ]  # fmt: skip
    store.insert_many(jobs)
    return jobs


def left(store: JobStore, queue: str, state: JobState) -> list[str]:
    page = store.find_many(
        {"filter": {"queueName": {"eq": queue}, "state": {"eq": state.value}}, "take": 1000}
    )
    return sorted(str(job.id) for job in page.items)


def test_retention_keeps_the_newest_per_queue_and_state(store: JobStore) -> None:
    q1, q2 = f"r1-{uuid.uuid4().hex[:6]}", f"r2-{uuid.uuid4().hex[:6]}"
    now = utcnow()
    done1 = stocked(store, q1, JobState.COMPLETED, 7, now - timedelta(hours=1))
    failed1 = stocked(store, q1, JobState.FAILED, 4, now - timedelta(hours=1))
    done2 = stocked(store, q2, JobState.COMPLETED, 5, now - timedelta(hours=1))
    waiting = stocked(store, q1, JobState.PENDING, 3, now - timedelta(days=30))
    removed = apply_rules(store.schedules, [RetentionRule(q1, JobState.COMPLETED, keep=3)])
    assert removed == {f"{q1}:COMPLETED": 4}
    assert left(store, q1, JobState.COMPLETED) == sorted(str(j.id) for j in done1[-3:])
    assert len(left(store, q1, JobState.FAILED)) == len(failed1)
    assert len(left(store, q2, JobState.COMPLETED)) == len(done2)
    assert apply_rules(store.schedules, parse_rules("*:COMPLETED:2:")) == {"*:COMPLETED": 4}
    assert left(store, q2, JobState.COMPLETED) == sorted(str(j.id) for j in done2[-2:])
    assert left(store, q1, JobState.PENDING) == sorted(str(j.id) for j in waiting)
    assert apply_rules(store.schedules, [RetentionRule(q1, JobState.FAILED, keep=0)]) == {
        f"{q1}:FAILED": 4
    }


def test_retention_removes_jobs_older_than_the_age(store: JobStore) -> None:
    queue = f"age-{uuid.uuid4().hex[:6]}"
    now = utcnow()
    old = stocked(store, queue, JobState.FAILED, 5, now - timedelta(days=10))
    recent = stocked(store, queue, JobState.FAILED, 3, now - timedelta(hours=2))
    cancelled = stocked(store, queue, JobState.CANCELLED, 2, now - timedelta(days=10))
    rule = RetentionRule(queue, JobState.FAILED, max_age=timedelta(days=7))
    assert store.schedules.apply_retention(rule, now) == len(old)
    assert left(store, queue, JobState.FAILED) == sorted(str(j.id) for j in recent)
    assert len(left(store, queue, JobState.CANCELLED)) == len(cancelled)
    both = RetentionRule(queue, JobState.FAILED, keep=2, max_age=timedelta(hours=1))
    assert store.schedules.apply_retention(both, now) == 3


def test_retention_keeps_exactly_n_when_jobs_share_a_creation_time(store: JobStore) -> None:
    queue, now = f"tie-{uuid.uuid4().hex[:6]}", utcnow()
    same = now - timedelta(minutes=5)
    store.insert_many(
        [make_job(queue_name=queue, state=JobState.COMPLETED, created_at=same, settled_at=same)
         for _ in range(5)]
    )  # fmt: skip
    newest = stocked(store, queue, JobState.COMPLETED, 1, now - timedelta(minutes=1))
    rule = RetentionRule(queue, JobState.COMPLETED, keep=3)
    assert store.schedules.apply_retention(rule, now) == 3
    kept = left(store, queue, JobState.COMPLETED)
    assert len(kept) == 3 and str(newest[0].id) in kept
