"""adapter.rerun: which jobs a re-run takes, what it copies, its bounds (memory store as finder)."""

from __future__ import annotations

import pytest

from adapter.errors import InvalidListOptionsError, JobNotRetryableError
from adapter.job import Job, JobState
from adapter.rerun import MAX_RETRY_JOBS, rerun_of, reruns_matching
from adapter.store.memory import MemoryJobStore


def _stored(store: MemoryJobStore, job_id: str, state: JobState, **fields: object) -> Job:
    job = Job(id=job_id, queue_name=fields.pop("queue_name", "q"), state=state, **fields)
    store.insert(job)
    return job


def test_a_rerun_copies_queue_data_retries_priority_and_links_back() -> None:
    failed = Job(
        id="a", queue_name="q", data={"k": 1}, retries=3, priority=7, state=JobState.FAILED,
        attempts=4, error="boom", progress=30,
    )  # fmt: skip
    again = rerun_of(failed)
    assert (again.queue_name, again.data, again.retries, again.priority) == ("q", {"k": 1}, 3, 7)
    assert again.retried_from == "a" and again.id is None
    assert (again.state, again.attempts, again.error) == (JobState.PENDING, 0, None)


@pytest.mark.parametrize("state", [JobState.PENDING, JobState.RUNNING, JobState.COMPLETED])
def test_only_failed_or_cancelled_jobs_rerun(state: JobState) -> None:
    with pytest.raises(JobNotRetryableError, match=f"job x is {state.value}"):
        rerun_of(Job(id="x", queue_name="q", state=state))


def test_reruns_matching_takes_failed_and_cancelled_matches_oldest_first_up_to_the_limit() -> None:
    store = MemoryJobStore()
    for n, state in enumerate([JobState.FAILED, JobState.COMPLETED, JobState.CANCELLED] * 3):
        _stored(store, f"j{n}", state)
    _stored(store, "other", JobState.FAILED, queue_name="elsewhere")
    options = {"filter": {"queueName": {"eq": "q"}}}
    assert [job.retried_from for job in reruns_matching(options, store)] == [
        "j0", "j2", "j3", "j5", "j6", "j8",
    ]  # fmt: skip
    assert [job.retried_from for job in reruns_matching(options, store, limit=2)] == ["j0", "j2"]


def test_reruns_matching_skips_jobs_already_rerun() -> None:
    store = MemoryJobStore()
    _stored(store, "a", JobState.FAILED)
    _stored(store, "b", JobState.FAILED)
    _stored(store, "a-again", JobState.PENDING, retried_from="a")
    assert [job.retried_from for job in reruns_matching(None, store)] == ["b"]


@pytest.mark.parametrize("limit", [-1, MAX_RETRY_JOBS + 1])
def test_reruns_matching_refuses_a_limit_out_of_range(limit: int) -> None:
    with pytest.raises(InvalidListOptionsError, match=f"limit is {limit}"):
        reruns_matching(None, MemoryJobStore(), limit)
