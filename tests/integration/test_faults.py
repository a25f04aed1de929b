"""Fault injection on the shared Redis and RabbitMQ: workers killed mid-run, and mixed load.

Every job is counted: the store must hold each added job exactly once, in the expected state,
and a run log written by the process itself shows which jobs ran more than once (at least
once delivery: only jobs in flight when a worker was killed may run twice).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest

from adapter import CeleryJobQueueStrategy, Job, JobState
from adapter.listing import MAX_TAKE
from tests.integration.conftest import SERVER_BROKERS, WorkerProcess
from tests.integration.test_lost_workers import LIVENESS
from tests.support import delete_queues, unique_queue, wait_for


def counts(producer: CeleryJobQueueStrategy, *queues: str) -> Counter[JobState]:
    """Return how many jobs of ``queues`` are in each state, as stored now."""
    total: Counter[JobState] = Counter()
    for queue, by_state in producer.queue_counts().items():
        if queue in queues:
            total.update({state: n for state, n in by_state.items() if n})
    return total


def unfinished(producer: CeleryJobQueueStrategy, queue: str) -> str:
    """Say which jobs of ``queue`` are not COMPLETED: state, attempts, heartbeat, error."""
    left = [job for job in stored_jobs(producer, queue) if job.state != JobState.COMPLETED]
    shown = "; ".join(
        f"{job.id} {job.state} attempts={job.attempts} started={job.started_at} error={job.error!r}"
        for job in left[:10]
    )
    return f"{len(left)} not completed: {shown}"


def stored_jobs(producer: CeleryJobQueueStrategy, queue: str) -> list[Job]:
    """Return every stored job of ``queue``, page by page."""
    found: list[Job] = []
    while True:
        page = producer.find_many(
            {"filter": {"queueName": {"eq": queue}}, "skip": len(found), "take": MAX_TAKE}
        )
        found.extend(page.items)
        if len(found) >= page.total_items or not page.items:
            return found


@SERVER_BROKERS
@pytest.mark.timeout(300)  # three worker starts and up to 180 s for a thousand jobs
def test_a_thousand_jobs_survive_two_killed_workers(
    producer: CeleryJobQueueStrategy, make_worker: Callable[..., WorkerProcess], tmp_path: Path
) -> None:
    queue = unique_queue("kills")
    run_log = tmp_path / "runs.log"
    run_log.touch()
    added = {producer.add(Job(queue_name=queue, data={"n": n})).id for n in range(1000)}
    env = {**LIVENESS, "TEST_RUN_LOG": str(run_log), "TEST_NAP_S": "0.005"}
    workers = [make_worker(f"{queue}=logged", "-P", "prefork", "-c", "2", **env) for _ in "abc"]
    try:
        for kill_after in (300, 600):
            worker = workers.pop(0)
            worker.start()
            wait_for(
                lambda: counts(producer, queue)[JobState.COMPLETED] >= kill_after,  # noqa: B023
                f"{kill_after} jobs completed",
            )
            worker.kill()
        workers[0].start()
        wait_for(
            lambda: counts(producer, queue)[JobState.COMPLETED] == 1000,
            "every job completed",
            timeout=180,
            report=lambda: unfinished(producer, queue),
        )
    finally:
        for worker in workers:
            worker.stop()
        delete_queues(producer, queue)

    jobs = stored_jobs(producer, queue)
    assert len(jobs) == 1000 and {job.id for job in jobs} == added  # none lost, none extra
    assert counts(producer, queue) == Counter({JobState.COMPLETED: 1000})
    runs = Counter(run_log.read_text().split())
    assert set(runs) == added  # every job ran
    ran_twice = {job_id for job_id, n in runs.items() if n > 1}
    retried = {job.id for job in jobs if job.attempts > 1}
    assert ran_twice <= retried  # only jobs a killed worker had started ran again
    assert len(retried) <= 2 * 2  # at most two jobs in flight per killed worker (concurrency 2)
    print(f"runs: {sum(runs.values())} for 1000 jobs; restarted after a kill: {len(retried)}")


@SERVER_BROKERS
@pytest.mark.timeout(720)  # it waits up to 600 s for 20,000 jobs to settle
def test_mixed_load_ends_with_exact_counts(
    producer: CeleryJobQueueStrategy, make_worker: Callable[..., WorkerProcess]
) -> None:
    queues = [unique_queue(f"mixed{i}") for i in range(4)]
    jobs: list[Job] = []
    for n in range(20_000):
        data = {"n": n, "fail": n % 100 == 1}  # 1 % fail on every attempt
        jobs.append(producer.add(Job(queue_name=queues[n % 4], data=data, retries=0)))
    cancelled = [producer.cancel_job(job.id or "") for job in jobs[::100]]  # 1 %, before any run
    spec = ",".join(f"{queue}=mixed" for queue in queues)
    workers = [make_worker(spec, "-P", "prefork", "-c", "1", **LIVENESS) for _ in range(2)]
    try:
        for worker in workers:
            worker.start()
        wait_for(
            lambda: (
                sum(counts(producer, *queues).values())
                == counts(producer, *queues)[JobState.COMPLETED]
                + counts(producer, *queues)[JobState.FAILED]
                + counts(producer, *queues)[JobState.CANCELLED]
            ),
            "every job settled",
            timeout=600,
            every=1.0,
        )
    finally:
        for worker in workers:
            worker.stop()
        delete_queues(producer, *queues)

    assert all(job is not None and job.state == JobState.CANCELLED for job in cancelled)
    assert counts(producer, *queues) == Counter(
        {JobState.COMPLETED: 19_600, JobState.FAILED: 200, JobState.CANCELLED: 200}
    )
    for queue in queues:
        assert sum(producer.queue_counts()[queue].values()) == 5_000
    failed = producer.find_many({"filter": {"state": {"eq": "FAILED"}}, "take": 1})
    assert failed.items and failed.items[0].error == "planned failure"
