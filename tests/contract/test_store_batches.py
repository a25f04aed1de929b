"""The store contract's batch writes, on every store: ``claim_many`` and ``update_many``.

A batch queue (``adapter.celery.batching``) claims its jobs in one write and records their
outcomes in one write. Each job must come out exactly as its own ``claim`` or ``update`` would
leave it: attempts counted per job, a settled or busy job not claimed, a job of another queue
refused alone (the rest claimed), a missing job recorded from its message, and a settled job
never overwritten by an outcome.
"""

from __future__ import annotations

from datetime import timedelta

from adapter.errors import WrongQueueError
from adapter.job import Job, JobState, utcnow
from adapter.store.base import JobStore
from tests.contract.test_store_contract import (  # noqa: F401 - fixtures
    CREATED,
    postgres_store,
    redis_prefix,
    redis_store,
    store,
    stored,
)
from tests.factories import make_job


def test_claim_many_claims_each_job_as_its_own_claim_would(store: JobStore) -> None:  # noqa: F811
    pending = make_job(queue_name="q", data={"n": 1})
    retrying = make_job(queue_name="q", state=JobState.RETRYING, retries=2, attempts=1)
    done = make_job(queue_name="q", state=JobState.COMPLETED, attempts=1, settled_at=CREATED)
    other = make_job(queue_name="b", data={"owner": "b"})
    missing = make_job(queue_name="q", data={"from": "message"})
    for job in (pending, retrying, done, other):
        store.insert(job)
    before = {job.id: stored(store, job) for job in (done, other)}
    forged = other.model_copy(update={"queue_name": "q", "data": {"owner": "forger"}})

    found = store.claim_many([pending, retrying, done, forged, missing])

    assert len(found) == 5
    first, second, settled, refused, recorded = found
    assert isinstance(first, Job) and isinstance(second, Job) and isinstance(recorded, Job)
    assert [(job.state, job.attempts) for job in (first, second, recorded)] == [
        (JobState.RUNNING, 1),
        (JobState.RUNNING, 2),
        (JobState.RUNNING, 1),
    ]
    assert all(job.started_at is not None for job in (first, second, recorded))
    assert (first.data, recorded.data) == ({"n": 1}, {"from": "message"})
    assert settled is None
    assert isinstance(refused, WrongQueueError)
    assert "stored for queue 'b', not 'q'" in str(refused)
    for job in (pending, retrying, missing):
        assert stored(store, job) == found[[pending, retrying, done, forged, missing].index(job)]
    assert {job.id: stored(store, job) for job in (done, other)} == before


def test_claim_many_leaves_a_job_running_with_a_fresh_beat_alone(store: JobStore) -> None:  # noqa: F811
    busy, idle = make_job(queue_name="q"), make_job(queue_name="q")
    store.insert_many([busy, idle])
    assert store.claim(busy) is not None
    just_before = utcnow() - timedelta(minutes=1)
    running = stored(store, busy)

    found = store.claim_many([busy, idle], busy_after=just_before)

    assert found[0] is None and stored(store, busy) == running  # alive elsewhere: a duplicate
    assert isinstance(found[1], Job) and found[1].attempts == 1
    later = store.claim_many([busy], busy_after=utcnow() + timedelta(minutes=1))
    assert isinstance(later[0], Job) and later[0].attempts == 2  # its worker is gone


def test_claim_many_of_no_jobs_is_empty(store: JobStore) -> None:  # noqa: F811
    assert store.claim_many([]) == []
    assert store.update_many([]) == []


def test_update_many_writes_each_outcome_and_never_a_settled_job(store: JobStore) -> None:  # noqa: F811
    jobs = [make_job(queue_name="q") for _ in range(3)]
    store.insert_many(jobs)
    claimed = [job for job in store.claim_many(jobs) if isinstance(job, Job)]
    assert len(claimed) == 3
    first, second, third = claimed
    assert store.cancel(third.id or "") is not None  # settled while it ran
    first.complete({"sent": 3})
    second.retries = 1
    second.fail("boom")
    third.complete("late")
    unknown = make_job(queue_name="q")
    unknown.complete("never stored")

    assert store.update_many([first, second, third, unknown]) == [True, True, False, False]

    found = [stored(store, job) for job in jobs]
    assert [(job.state, job.result, job.error) for job in found] == [
        (JobState.COMPLETED, {"sent": 3}, None),
        (JobState.RETRYING, None, "boom"),
        (JobState.CANCELLED, None, None),
    ]
    assert found[0].is_settled and not found[1].is_settled
    assert store.get(unknown.id or "") is None
    by_state = store.find_many({"filter": {"state": {"eq": "COMPLETED"}}}).items
    assert [job.id for job in by_state] == [first.id]  # the indexes follow each write


def test_claim_many_leaves_a_job_not_ready_yet_waiting_and_claims_the_rest(store: JobStore) -> None:  # noqa: F811
    early = make_job(queue_name="q", ready_at=utcnow() + timedelta(hours=1))
    ready = make_job(queue_name="q")
    store.insert_many([early, ready])

    found = store.claim_many([early, ready])

    assert found[0] is None and stored(store, early).state == JobState.PENDING
    assert stored(store, early).attempts == 0
    assert isinstance(found[1], Job) and found[1].state == JobState.RUNNING
