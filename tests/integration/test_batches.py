"""High-throughput (batch) queues on real workers: each job keeps its own claim, attempts and
outcome, and a worker SIGKILLed mid-batch loses no job and runs no completed job again.

The run log (``logged`` process) has one line per run of a job: a job's attempts in the store
must equal its runs there, whatever was killed.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest
import redis

from adapter import CeleryJobQueueStrategy, Job, JobState
from adapter.celery.routing import celery_queue
from tests.integration.conftest import SERVER_BROKERS, WorkerProcess
from tests.support import delete_queues, unique_queue, wait_for, wait_settled

#: Short heartbeats, so that the job running when its worker was killed is noticed in seconds.
LIVENESS = {"ADAPTER_HEARTBEAT_INTERVAL": "0.5", "ADAPTER_HEARTBEAT_TIMEOUT": "2"}
PREFORK = ("-P", "prefork", "-c", "2")


def _runs(log: Path) -> Counter[str]:
    return Counter(log.read_text().split()) if log.exists() else Counter()


def _unacked(producer: CeleryJobQueueStrategy, queue_name: str) -> int:
    """How many messages of ``queue_name`` kombu's Redis transport holds unacknowledged."""
    with redis.Redis.from_url(producer.app.conf.broker_url) as client:
        stored = [json.loads(raw) for raw in client.hvals("unacked")]
    return sum(
        1 for _payload, _exchange, routing_key in stored if routing_key == celery_queue(queue_name)
    )


@SERVER_BROKERS
@pytest.mark.parametrize("pool", [PREFORK, ("-P", "threads", "-c", "2"), ("-P", "solo")])
def test_each_job_of_a_batch_queue_has_its_own_outcome_and_retries(
    producer: CeleryJobQueueStrategy,
    make_worker: Callable[..., WorkerProcess],
    pool: tuple[str, ...],
) -> None:
    queue = unique_queue("batch")
    good = [producer.add(Job(queue_name=queue, data={"n": n})) for n in range(25)]
    bad = producer.add(Job(queue_name=queue, data={"fail": True}, retries=1))
    worker = make_worker(f"{queue}=mixed", *pool, "-l", "DEBUG", TEST_BATCH="10")
    try:
        worker.start()
        settled = [wait_settled(producer, job) for job in good]
        failed = wait_settled(producer, bad)
        if producer.app.conf.broker_url.startswith("redis"):  # acknowledged: kombu forgot them
            wait_for(lambda: _unacked(producer, queue) == 0, "every message acknowledged")
    finally:
        worker.stop()
        delete_queues(producer, queue)
    assert {(job.state, job.result, job.attempts) for job in settled} == {
        (JobState.COMPLETED, "ok", 1)
    }
    assert (failed.state, failed.attempts) == (JobState.FAILED, 2)  # retried once, then failed
    assert "planned failure" in str(failed.error)
    batched = re.findall(r"batch of (\d+) jobs of", worker.log_text())
    assert sum(map(int, batched)) >= len(good) + 2  # every attempt went to the pool in a batch


@SERVER_BROKERS
def test_a_worker_killed_mid_batch_loses_nothing_and_reruns_no_completed_job(
    producer: CeleryJobQueueStrategy,
    make_worker: Callable[..., WorkerProcess],
    tmp_path: Path,
) -> None:
    queue = unique_queue("batch-kill")
    log = tmp_path / "runs.log"
    jobs = [producer.add(Job(queue_name=queue, data={"n": n})) for n in range(30)]
    ids = [job.id or "" for job in jobs]
    common = {"TEST_BATCH": "10", "TEST_RUN_LOG": str(log), **LIVENESS}
    first = make_worker(f"{queue}=logged", *PREFORK, TEST_NAP_S="0.3", **common)
    second = make_worker(f"{queue}=logged", *PREFORK, **common)
    try:
        first.start()
        wait_for(lambda: sum(_runs(log).values()) >= 4, "a batch to be under way")
        first.kill()
        before = {job.id or "" for job in producer.find_many_by_id(ids)}
        completed_before = {
            job.id or "" for job in producer.find_many_by_id(ids) if job.state == JobState.COMPLETED
        }
        second.start()
        settled = [wait_settled(producer, job) for job in jobs]
    finally:
        second.stop()
        delete_queues(producer, queue)
    runs = _runs(log)
    assert before == set(ids)
    assert 0 < len(completed_before) < len(jobs)  # killed mid-way: some done, some not
    assert all(job.state == JobState.COMPLETED for job in settled)
    assert all(runs[job_id] == 1 for job_id in completed_before)  # never run again
    assert {job.id or "": job.attempts for job in settled} == {i: runs[i] for i in ids}
