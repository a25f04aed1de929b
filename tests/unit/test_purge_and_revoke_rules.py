"""What a purge and a revoke do to stored jobs (the lifecycle's rules, on the memory store)."""

from __future__ import annotations

from datetime import timedelta

from adapter.backoff import constant_backoff
from adapter.job import JobState, utcnow
from adapter.lifecycle import Lifecycle, Liveness
from adapter.running import RunningJobs
from adapter.store.memory import MemoryJobStore
from tests.factories import make_job


def _lifecycle(store: MemoryJobStore) -> Lifecycle:
    return Lifecycle(store, Liveness(), constant_backoff(), RunningJobs(store))


def test_a_purge_cancels_only_the_waiting_jobs_of_its_queue_with_the_reason() -> None:
    store = MemoryJobStore()
    pending, retrying, running, done, other = (
        make_job(queue_name="mail"),
        make_job(queue_name="mail", state=JobState.RETRYING, retries=2, attempts=1),
        make_job(queue_name="mail", state=JobState.RUNNING, attempts=1),
        make_job(queue_name="mail", state=JobState.COMPLETED, settled_at=utcnow()),
        make_job(queue_name="sms"),
    )
    for job in (pending, retrying, running, done, other):
        store.insert(job)
    store.insert(later := make_job(queue_name="mail", created_at=utcnow() + timedelta(hours=1)))

    cancelled = _lifecycle(store).purged("mail", before=utcnow())

    assert {job.id for job in cancelled} == {pending.id, retrying.id}
    states = {job.id: job.state for job in store.find_many_by_id([
        pending.id or "", retrying.id or "", running.id or "", done.id or "", other.id or "",
        later.id or "",
    ])}  # fmt: skip
    assert states == {
        pending.id: JobState.CANCELLED,
        retrying.id: JobState.CANCELLED,
        running.id: JobState.RUNNING,
        done.id: JobState.COMPLETED,
        other.id: JobState.PENDING,
        later.id: JobState.PENDING,  # added after the purge: its message was not purged
    }
    purged = store.get(pending.id or "")
    assert purged is not None and purged.is_settled
    assert purged.error == "cancelled: the messages of queue 'mail' were purged from the broker"


def test_a_revoke_cancels_the_unsettled_jobs_among_its_ids_and_skips_others() -> None:
    store = MemoryJobStore()
    waiting, done = make_job(), make_job(state=JobState.FAILED, settled_at=utcnow(), error="x")
    store.insert(waiting)
    store.insert(done)

    cancelled = _lifecycle(store).cancel_many([waiting.id or "", done.id or "", "not-a-job"])

    assert [job.id for job in cancelled] == [waiting.id]
    assert [job.state for job in store.find_many_by_id([waiting.id or "", done.id or ""])] == [
        JobState.CANCELLED,
        JobState.FAILED,
    ]
