"""Jobs added here run on a real ``celery worker`` process, on Redis and on RabbitMQ."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from adapter import CeleryJobQueueStrategy, Job, JobState
from tests.integration.conftest import WorkerProcess
from tests.support import delete_queues, unique_queue, wait_settled


def test_prefork_worker_runs_jobs_added_elsewhere(
    producer: CeleryJobQueueStrategy, make_worker: Callable[..., WorkerProcess]
) -> None:
    queue = unique_queue("prefork")
    late = unique_queue("late")
    worker = make_worker(f"{queue}=echo", "-P", "prefork", "-c", "2", TEST_LATE_QUEUE=late)
    try:
        report = worker.start()
        jobs = [producer.add(Job(queue_name=queue, data={"n": i})) for i in range(20)]
        late_job = producer.add(Job(queue_name=late, data="late"))
        done = [wait_settled(producer, job) for job in [*jobs, late_job]]
    finally:
        worker.stop()
        delete_queues(producer, queue, late, late + "-lambda")
    assert [d.state for d in done] == [JobState.COMPLETED] * 21
    assert [d.result["data"] for d in done[:20]] == [{"n": i} for i in range(20)]
    assert len({d.result["pid"] for d in done}) >= 1
    assert done[20].result["data"] == "late"
    assert report.startswith("late lambda refused:")
    assert "prefork children are already running" in report


@pytest.mark.parametrize("pool", ["threads", "solo"])
def test_other_pools_run_jobs_too(
    producer: CeleryJobQueueStrategy, make_worker: Callable[..., WorkerProcess], pool: str
) -> None:
    queue = unique_queue(pool)
    worker = make_worker(f"{queue}=echo", "-P", pool, "-c", "2")
    try:
        report = worker.start()
        job = producer.add(Job(queue_name=queue, data=pool))
        done = wait_settled(producer, job)
    finally:
        worker.stop()
        delete_queues(producer, queue)
    assert done.state == JobState.COMPLETED and done.result["data"] == pool
    assert report == "late lambda accepted"
