"""SIGTERM to ``jobqueue worker`` on the threads and solo pools: the job runs once at a time.

These pools cannot stop a running job, so the worker keeps it (never defers it) and waits the
graceful timeout plus ``KEEP_WAITING_S``; the process is gone within ``EXIT_BOUND_S`` whatever
the job does. The prefork case (deferral) is in ``test_worker_command.py``.
"""

from __future__ import annotations

import signal
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from adapter import CeleryJobQueueStrategy, Job, JobState
from adapter.celery.embedded import EXIT_ABANDONED
from adapter.celery.worker import EXIT_ALLOWANCE_S, KEEP_WAITING_S
from tests.integration.conftest import JOBQUEUE_WORKER, WorkerProcess
from tests.support import (
    delete_queues,
    messages_waiting,
    unique_queue,
    wait_for,
    wait_job,
    wait_settled,
)

#: The ``--graceful-timeout`` the workers here get, in seconds.
GRACEFUL_TIMEOUT_S = 1.0
#: When the worker must be gone after SIGTERM at the latest (worker.py), plus room for a
#: noisy machine, in seconds.
EXIT_BOUND_S = GRACEFUL_TIMEOUT_S + KEEP_WAITING_S + EXIT_ALLOWANCE_S + 15.0
#: Short heartbeats, so that a job left behind runs again within a test.
FAST_HEARTBEAT = {"ADAPTER_HEARTBEAT_INTERVAL": "0.5", "ADAPTER_HEARTBEAT_TIMEOUT": "2"}

POOLS = ["threads", "solo"]


def start_first_worker(
    make_worker: Callable[..., WorkerProcess], queue: str, pool: str
) -> WorkerProcess:
    """Start the ``jobqueue worker`` that gets SIGTERM while it runs a ``counted`` job."""
    worker = make_worker(
        f"{queue}=counted",
        "--pool",
        pool,
        "--concurrency",
        "1",
        "--graceful-timeout",
        str(GRACEFUL_TIMEOUT_S),
        command=JOBQUEUE_WORKER,
        **FAST_HEARTBEAT,
    )
    worker.start()
    return worker


def exit_code_within_bound(worker: WorkerProcess) -> int:
    """Wait for the SIGTERMed worker to exit, failing once ``EXIT_BOUND_S`` has passed."""
    assert worker.popen is not None
    try:
        return worker.popen.wait(EXIT_BOUND_S)
    except subprocess.TimeoutExpired:
        raise AssertionError(
            f"worker still running {EXIT_BOUND_S:.0f}s after SIGTERM: {worker.log_text()[-3000:]}"
        ) from None


def run_lines(runs_file: Path, job_id: str) -> list[str]:
    """Return the lines ``counted`` wrote for ``job_id``: one per run of its body."""
    if not runs_file.exists():
        return []
    return [line for line in runs_file.read_text().splitlines() if line.startswith(job_id)]


@pytest.mark.parametrize("pool", POOLS)
def test_sigterm_on_a_pool_that_cannot_stop_jobs_keeps_the_job_and_runs_it_once(
    pool: str,
    producer: CeleryJobQueueStrategy,
    make_worker: Callable[..., WorkerProcess],
    tmp_path: Path,
) -> None:
    queue = unique_queue(f"keep-{pool}")
    release, runs = tmp_path / "release", tmp_path / "runs"
    first = start_first_worker(make_worker, queue, pool)
    second = make_worker(f"{queue}=counted", "-P", pool, "-c", "1")
    try:
        job = producer.add(
            Job(queue_name=queue, data={"release_file": str(release), "runs_file": str(runs)})
        )
        job_id = job.id or ""
        wait_job(producer, job_id, lambda found: found.state == JobState.RUNNING, "running")
        assert first.popen is not None
        first.popen.send_signal(signal.SIGTERM)
        wait_for(
            lambda: f"cannot stop a running job on the {pool} pool" in first.log_text(),
            "the worker to say it keeps the job",
        )
        kept = producer.find_one(job_id)
        assert kept is not None and kept.state == JobState.RUNNING  # not deferred
        release.touch()
        assert exit_code_within_bound(first) == 0, first.log_text()[-3000:]
        done = wait_settled(producer, job)
        assert "deferred" not in first.log_text()
        # Another worker on the queue now: the job's message is gone, it never runs again.
        second.start()
        probe = producer.add(
            Job(queue_name=queue, data={"release_file": str(release), "runs_file": str(runs)})
        )
        assert wait_settled(producer, probe).state == JobState.COMPLETED
        assert messages_waiting(producer, queue) == 0
    finally:
        second.stop()
        delete_queues(producer, queue)
    assert (done.state, done.result, done.attempts) == (
        JobState.COMPLETED,
        "released on attempt 1",
        1,
    )
    assert len(run_lines(runs, job_id)) == 1


def test_sigterm_with_a_job_that_does_not_finish_exits_within_the_bound_and_it_runs_again_later(
    producer: CeleryJobQueueStrategy,
    make_worker: Callable[..., WorkerProcess],
    tmp_path: Path,
) -> None:
    queue = unique_queue("abandon")
    release, runs = tmp_path / "release", tmp_path / "runs"
    first = start_first_worker(make_worker, queue, "threads")
    second = make_worker(f"{queue}=counted", "-P", "threads", "-c", "1", **FAST_HEARTBEAT)
    try:
        job = producer.add(
            Job(queue_name=queue, data={"release_file": str(release), "runs_file": str(runs)})
        )
        job_id = job.id or ""
        running = wait_job(producer, job_id, lambda found: found.state == JobState.RUNNING, "run")
        second.start()  # consuming from now on: it must not run the job while the first one does
        assert first.popen is not None
        first.popen.send_signal(signal.SIGTERM)
        assert exit_code_within_bound(first) == EXIT_ABANDONED, first.log_text()[-3000:]
        assert "exiting with 1 job(s) still running" in first.log_text()
        assert len(run_lines(runs, job_id)) == 1  # nobody ran it while the first process lived
        release.touch()
        done = wait_settled(producer, job)
    finally:
        second.stop()
        delete_queues(producer, queue)
    assert running.attempts == 1
    assert (done.state, done.result, done.attempts) == (
        JobState.COMPLETED,
        "released on attempt 2",
        2,
    )
    assert len(run_lines(runs, job_id)) == 2
