"""Jobs of workers that die: run again by another worker, bounded, never RUNNING for ever.

Each test runs on the embedded broker, Redis and RabbitMQ. RabbitMQ hands a dead connection's
message back at once; Redis only after its visibility timeout (an hour) and the embedded broker
never: there the reaper of the surviving worker is what brings the job back, once its
heartbeat is older than the timeout these workers use (``LIVENESS``).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from adapter import CeleryJobQueueStrategy, Job, JobState
from tests.integration.conftest import SERVER_BROKERS, WorkerProcess
from tests.support import delete_queues, unique_queue, wait_job, wait_settled

#: Short heartbeats, so that a lost worker is noticed within seconds.
LIVENESS = {"ADAPTER_HEARTBEAT_INTERVAL": "0.5", "ADAPTER_HEARTBEAT_TIMEOUT": "2"}


def test_job_of_a_killed_worker_runs_again_and_completes(
    producer: CeleryJobQueueStrategy, make_worker: Callable[..., WorkerProcess]
) -> None:
    queue = unique_queue("lost")
    job = producer.add(Job(queue_name=queue, data=None))
    first = make_worker(f"{queue}=slow", "-P", "prefork", "-c", "2", **LIVENESS)
    second = make_worker(f"{queue}=slow", "-P", "prefork", "-c", "2", **LIVENESS)
    try:
        first.start()
        wait_job(producer, job.id or "", lambda found: found.state == JobState.RUNNING, "running")
        first.kill()
        second.start()
        done = wait_settled(producer, job)  # far sooner than Redis's hour
    finally:
        second.stop()
        delete_queues(producer, queue)
    assert (done.state, done.result, done.attempts, done.error) == (
        JobState.COMPLETED,
        "done on attempt 2",
        2,
        None,  # the lost worker's reason no longer describes a job that completed
    )


def test_a_job_that_always_kills_its_worker_fails_after_bounded_restarts(
    producer: CeleryJobQueueStrategy, make_worker: Callable[..., WorkerProcess]
) -> None:
    queue = unique_queue("crash")
    job = producer.add(Job(queue_name=queue, data=None, retries=1))
    worker = make_worker(
        f"{queue}=crash", "-P", "prefork", "-c", "1", ADAPTER_MAX_REDELIVERIES="2", **LIVENESS
    )
    try:
        worker.start()
        done = wait_settled(producer, job)
        alive = worker.popen is not None and worker.popen.poll() is None
    finally:
        worker.stop()
        delete_queues(producer, queue)
    assert done.state == JobState.FAILED
    assert done.attempts == 1 + 1 + 2 + 1  # retries + 1 + redeliveries, then the refused start
    assert "started 5 times without finishing" in str(done.error)
    assert alive


@pytest.mark.parametrize("broker_url", ["redis"], indirect=True)
def test_a_live_workers_job_longer_than_the_heartbeat_timeout_is_delivered_once(
    producer: CeleryJobQueueStrategy, make_worker: Callable[..., WorkerProcess], tmp_path: Path
) -> None:
    queue = unique_queue("long")
    run_log = tmp_path / "runs.log"
    run_log.touch()
    env = {**LIVENESS, "TEST_RUN_LOG": str(run_log), "TEST_NAP_S": "7"}  # 3.5 timeouts
    workers = [make_worker(f"{queue}=logged", "-P", "prefork", "-c", "1", **env) for _ in "ab"]
    try:
        for worker in workers:  # the idle one would take a copy put back by either reaper
            worker.start()
        # added once both are ready: a message a worker took but did not start within the
        # heartbeat timeout (a worker still starting on a loaded machine) is put back, by design
        job = producer.add(Job(queue_name=queue, data=None))
        done = wait_settled(producer, job)
    finally:
        for worker in workers:
            worker.stop()
        delete_queues(producer, queue)
    assert (done.state, done.attempts) == (JobState.COMPLETED, 1)
    assert run_log.read_text().split() == [job.id]
    for worker in workers:
        assert "job message(s) taken by a worker that was lost" not in worker.log_text()
        assert "running elsewhere" not in worker.log_text()  # no copy delivered


# Not on the embedded default: there billiard's replacement of the killed pool process
# sometimes waits for ever on the result pipe's lock (billiard issue 104: a process killed by
# the hard time limit while its exit holds that lock), which this test cannot tell apart.
@SERVER_BROKERS
def test_a_hard_time_limit_is_a_failed_attempt_retried_then_failed(
    producer: CeleryJobQueueStrategy, make_worker: Callable[..., WorkerProcess], tmp_path: Path
) -> None:
    queue = unique_queue("limit")
    run_log = tmp_path / "runs.log"
    run_log.touch()
    job = producer.add(Job(queue_name=queue, data=None, retries=1))
    env = {**LIVENESS, "TEST_RUN_LOG": str(run_log), "TEST_NAP_S": "60"}
    worker = make_worker(f"{queue}=logged", "-P", "prefork", "-c", "1", "--time-limit", "1", **env)
    try:
        worker.start()
        done = wait_settled(producer, job)
    finally:
        worker.stop()
        delete_queues(producer, queue)
    assert (done.state, done.attempts) == (JobState.FAILED, 2)  # not restarts of a lost worker
    assert "stopped by the hard time limit (1s)" in str(done.error)
    assert run_log.read_text().split() == [job.id, job.id]
