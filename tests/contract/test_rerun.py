"""Re-running settled jobs with lineage (``retry_job``, ``retry_jobs``), on every pair."""

from __future__ import annotations

from typing import Any

import pytest

from adapter import CeleryJobQueueStrategy, Job, JobState
from adapter.errors import JobNotRetryableError, UnknownJobError
from tests.support import wait_settled


def _fail_once_per_data(seen: list[Any]) -> Any:
    """A process that fails the first time it sees a datum and completes the next time."""

    def process(job: Job) -> Any:
        if job.data not in seen:
            seen.append(job.data)
            raise RuntimeError(f"first try of {job.data}")
        return {"ran": job.data}

    return process


def test_retry_job_reruns_a_failed_job_as_a_new_linked_job(
    strategy: CeleryJobQueueStrategy, queue: str, run: Any
) -> None:
    run(queue, _fail_once_per_data([]))
    original = wait_settled(strategy, strategy.add(Job(queue_name=queue, data={"n": 1}, retries=0)))
    assert original.state == JobState.FAILED

    rerun = strategy.retry_job(original.id or "")

    assert rerun.id != original.id and rerun.retried_from == original.id
    assert (rerun.queue_name, rerun.data, rerun.retries) == (queue, {"n": 1}, 0)
    done = wait_settled(strategy, rerun)
    assert done.state == JobState.COMPLETED and done.result == {"ran": {"n": 1}}
    assert done.retried_from == original.id
    assert [job.id for job in strategy.retries_of(original.id or "")] == [rerun.id]
    unchanged = strategy.find_one(original.id or "")
    assert unchanged is not None and unchanged.state == JobState.FAILED
    assert unchanged.to_wire()["retriedFrom"] is None
    assert done.to_wire()["retriedFrom"] == original.id


def test_retry_job_refuses_a_job_that_did_not_fail_or_an_unknown_id(
    strategy: CeleryJobQueueStrategy, queue: str
) -> None:
    pending = strategy.add(Job(queue_name=queue, data=None))
    with pytest.raises(JobNotRetryableError, match="is PENDING; only a FAILED or CANCELLED"):
        strategy.retry_job(pending.id or "")
    with pytest.raises(UnknownJobError, match="no job with id nope"):
        strategy.retry_job("nope")


def test_retry_job_reruns_a_cancelled_job(strategy: CeleryJobQueueStrategy, queue: str) -> None:
    job = strategy.add(Job(queue_name=queue, data="again"))
    strategy.cancel_job(job.id or "")
    rerun = strategy.retry_job(job.id or "")
    stored = strategy.find_one(rerun.id or "")
    assert stored is not None and stored.state == JobState.PENDING
    assert stored.retried_from == job.id and stored.data == "again"


def test_retry_jobs_reruns_every_failed_match_once(
    strategy: CeleryJobQueueStrategy, queue: str, run: Any
) -> None:
    run(queue, _fail_once_per_data([]))
    failed = [strategy.add(Job(queue_name=queue, data=n)) for n in range(20)]
    for job in failed:
        assert wait_settled(strategy, job).state == JobState.FAILED
    strategy.flush()
    options = {"filter": {"queueName": {"eq": queue}, "state": {"eq": "FAILED"}}}

    assert strategy.retry_jobs(options) == 20
    assert strategy.retry_jobs(options) == 0  # each already has its re-run

    reruns = strategy.find_many(
        {"filter": {"queueName": {"eq": queue}, "retriedFrom": {"isNull": False}}, "take": 100}
    ).items
    assert sorted(job.retried_from or "" for job in reruns) == sorted(j.id or "" for j in failed)
    for rerun in reruns:
        assert wait_settled(strategy, rerun).state == JobState.COMPLETED


def test_retry_jobs_keeps_an_or_filter_inside_its_state_rule(
    strategy: CeleryJobQueueStrategy, queue: str
) -> None:
    cancelled = strategy.add(Job(queue_name=queue, data="c"))
    strategy.cancel_job(cancelled.id or "")
    strategy.add(Job(queue_name=queue, data="p"))  # PENDING: matches the OR, never re-run
    options = {
        "filter": {"queueName": {"eq": queue}, "id": {"eq": "no-such-id"}},
        "filterOperator": "OR",
    }
    assert strategy.retry_jobs(options, limit=5) == 1
    assert [job.data for job in strategy.retries_of(cancelled.id or "")] == ["c"]
