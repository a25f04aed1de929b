"""Celery's revoke and purge mean what they say for jobs, the same on Redis and RabbitMQ."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from celery import Celery

from adapter import CeleryJobQueueStrategy, Job, JobState
from tests.integration.celery_tools.conftest import (
    celery_tool,
    jobqueue,
    pid_of_run,
    process_gone,
    runs,
    tool_env,
)
from tests.integration.conftest import WorkerProcess
from tests.support import (
    delete_queues,
    messages_waiting,
    unique_queue,
    wait_for,
    wait_job,
    wait_settled,
)


def _is(state: JobState) -> Callable[[Job], bool]:
    return lambda job: job.state == state


def test_a_revoked_waiting_job_is_cancelled_and_never_runs(
    producer: CeleryJobQueueStrategy,
    make_worker: Callable[..., WorkerProcess],
    client: Celery,
    tmp_path: Path,
    redis_url: str,
) -> None:
    queue, runs_file, release = unique_queue("revoke"), tmp_path / "runs", tmp_path / "release"
    worker = make_worker(
        f"{queue}=counted", "-P", "prefork", "-c", "1", CELERY_RESULT_BACKEND=redis_url
    )
    try:
        worker.start()
        data = {"runs_file": str(runs_file), "release_file": str(release)}
        busy = producer.add(Job(queue_name=queue, data=data))
        wait_for(lambda: pid_of_run(runs_file, busy.id or ""), "the first job to run")
        waiting = producer.add(Job(queue_name=queue, data=data))
        producer.flush()

        client.control.revoke(waiting.id)
        cancelled = wait_job(producer, waiting.id or "", _is(JobState.CANCELLED), "cancelled")
        wait_for(  # written just after the job's cancellation
            lambda: client.AsyncResult(waiting.id).state == "REVOKED",
            "Celery's result to say REVOKED",
            report=lambda: client.AsyncResult(waiting.id).state,
        )
        release.touch()
        assert wait_settled(producer, busy).state == JobState.COMPLETED
        wait_for(lambda: messages_waiting(producer, queue) == 0, "the revoked message to go")
        after = producer.find_one(waiting.id or "")
    finally:
        worker.stop()
        delete_queues(producer, queue)
    assert cancelled.is_settled and cancelled.attempts == 0
    assert after is not None and (after.state, after.attempts) == (JobState.CANCELLED, 0)
    assert [line.split()[0] for line in runs(runs_file)] == [busy.id]


def test_revoke_terminate_cancels_a_running_prefork_job_and_stops_its_process(
    producer: CeleryJobQueueStrategy,
    make_worker: Callable[..., WorkerProcess],
    client: Celery,
    tmp_path: Path,
    redis_url: str,
) -> None:
    queue, runs_file, release = unique_queue("terminate"), tmp_path / "runs", tmp_path / "release"
    worker = make_worker(
        f"{queue}=counted", "-P", "prefork", "-c", "1", CELERY_RESULT_BACKEND=redis_url
    )
    data = {"runs_file": str(runs_file), "release_file": str(release)}
    try:
        worker.start()
        job = producer.add(Job(queue_name=queue, data=data, retries=3))
        pid = wait_for(lambda: pid_of_run(runs_file, job.id or ""), "the job to run")

        client.control.revoke(job.id, terminate=True)
        cancelled = wait_job(producer, job.id or "", _is(JobState.CANCELLED), "cancelled")
        wait_for(lambda: process_gone(pid), f"the pool process {pid} to stop")
        release.touch()  # a job run after this finishes at once
        later = producer.add(Job(queue_name=queue, data=data))
        assert wait_settled(producer, later).state == JobState.COMPLETED  # the worker goes on
        final = producer.find_one(job.id or "")
        state = wait_for(
            lambda: client.AsyncResult(job.id).state == "REVOKED", "the result to be REVOKED"
        )
    finally:
        worker.stop()
        delete_queues(producer, queue)
    assert cancelled.is_settled and state
    assert final is not None and (final.state, final.attempts) == (JobState.CANCELLED, 1)
    assert [line.split()[0] for line in runs(runs_file)] == [job.id, later.id]


@pytest.mark.parametrize("tool", ["celery purge", "jobqueue purge"])
def test_a_purged_queue_leaves_its_waiting_jobs_cancelled(
    producer: CeleryJobQueueStrategy,
    make_worker: Callable[..., WorkerProcess],
    broker_url: str,
    store_url: str,
    tool: str,
) -> None:
    queue = unique_queue("purge")
    env = tool_env(broker_url, store_url)
    worker = make_worker(f"{queue}=echo", "-P", "threads", "-c", "1")
    try:
        waiting = [producer.add(Job(queue_name=queue, data={"n": n}, retries=2)) for n in range(3)]
        producer.flush()
        wait_for(lambda: messages_waiting(producer, queue) == 3, "three messages to wait")
        if tool == "celery purge":
            done = celery_tool(env, "purge", "-f", "-Q", f"jobs.{queue}")
            assert done.returncode == 0, done.stderr
        else:
            done = jobqueue(env, "purge", queue)
            assert done.returncode == 0, done.stderr
            assert done.stdout == (
                f"purged {queue}: 3 waiting job(s) cancelled, 3 message(s) deleted\n"
            )
        purged = [producer.find_one(job.id or "") for job in waiting]
        assert messages_waiting(producer, queue) == 0
        worker.start()  # a worker of the queue, on Redis with its orphan recovery, runs on
        added = producer.add(Job(queue_name=queue, data={"n": 3}))
        assert wait_settled(producer, added).state == JobState.COMPLETED
        after = [producer.find_one(job.id or "") for job in waiting]
    finally:
        worker.stop()
        delete_queues(producer, queue)
    assert [job.state if job else None for job in purged] == [JobState.CANCELLED] * 3
    assert all(job and "purged" in (job.error or "") and job.is_settled for job in purged)
    assert [job.state if job else None for job in after] == [JobState.CANCELLED] * 3


def test_jobqueue_purge_of_a_bad_queue_name_is_one_line_and_fails(
    broker_url: str, store_url: str
) -> None:
    done = jobqueue(tool_env(broker_url, store_url), "purge", "no spaces")
    assert done.returncode != 0
    assert len(done.stderr.strip().splitlines()) == 1 and "queue name" in done.stderr
