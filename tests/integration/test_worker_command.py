"""``jobqueue worker``: active queues, health endpoint, and SIGTERM deferring running jobs."""

from __future__ import annotations

import json
import socket
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

from adapter import CeleryJobQueueStrategy, Job, JobState
from tests.integration.conftest import JOBQUEUE_WORKER, WorkerProcess
from tests.support import delete_queues, unique_queue, wait_for, wait_job, wait_settled


def free_port() -> int:
    """Return a TCP port nobody listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_sigterm_defers_the_running_job_and_another_worker_completes_it(
    producer: CeleryJobQueueStrategy,
    make_worker: Callable[..., WorkerProcess],
    tmp_path: Path,
) -> None:
    queue = unique_queue("sigterm")
    release = tmp_path / "release"
    port = free_port()
    first = make_worker(
        f"{queue}=gated",
        "--pool",
        "prefork",
        "--concurrency",
        "2",
        "--graceful-timeout",
        "2",
        "--health-port",
        str(port),
        "--health-host",
        "0.0.0.0",
        command=JOBQUEUE_WORKER,
    )
    second = make_worker(f"{queue}=gated", "-P", "prefork", "-c", "2")
    try:
        first.start()

        def healthy() -> dict[str, object] | None:
            url = f"http://127.0.0.1:{port}/health"
            with urllib.request.urlopen(url, timeout=10) as answer:
                found: dict[str, object] = json.loads(answer.read())
            return found if found["queues"] == [queue] else None

        assert wait_for(healthy, f"/health to list {queue}")["status"] == "ok"
        job = producer.add(Job(queue_name=queue, data={"release_file": str(release)}))
        job_id = job.id or ""
        wait_job(producer, job_id, lambda found: found.state == JobState.RUNNING, "running")
        first.terminate()
        deferred = producer.find_one(job_id)
        assert deferred is not None
        assert (deferred.state, deferred.attempts) == (JobState.PENDING, 0), first.log_text()[
            -3000:
        ]
        assert "deferred 1 running job(s) to PENDING" in first.log_text()
        release.touch()
        second.start()
        done = wait_settled(producer, job)
    finally:
        second.stop()
        delete_queues(producer, queue)
    assert (done.state, done.result, done.attempts) == (
        JobState.COMPLETED,
        "released on attempt 1",
        1,
    )


def test_worker_runs_only_its_active_queues(
    producer: CeleryJobQueueStrategy, make_worker: Callable[..., WorkerProcess]
) -> None:
    active, other = unique_queue("active"), unique_queue("other")
    worker = make_worker(
        f"{active}=echo,{other}=echo",
        "--pool",
        "threads",
        "--queues",
        active,
        command=JOBQUEUE_WORKER,
    )
    try:
        worker.start()
        ran = producer.add(Job(queue_name=active, data="yes"))
        waiting = producer.add(Job(queue_name=other, data="no"))
        assert wait_settled(producer, ran).state == JobState.COMPLETED
        time.sleep(2)  # a wrongly consumed queue would have run its job by now
        still = producer.find_one(waiting.id or "")
        assert still is not None and still.state == JobState.PENDING
    finally:
        worker.stop()
        delete_queues(producer, active, other)


def test_concurrency_two_runs_two_jobs_at_once_and_the_third_waits(
    producer: CeleryJobQueueStrategy,
    make_worker: Callable[..., WorkerProcess],
    tmp_path: Path,
) -> None:
    queue = unique_queue("concurrency")
    release = tmp_path / "release"
    worker = make_worker(
        f"{queue}=gated", "--pool", "threads", "--concurrency", "2", command=JOBQUEUE_WORKER
    )
    try:
        jobs = [producer.add(Job(queue_name=queue, data={"release_file": str(release)}))
                for _ in range(3)]  # fmt: skip
        worker.start()
        for job in jobs[:2]:
            wait_job(producer, job.id or "", lambda found: found.state == JobState.RUNNING, "run")
        time.sleep(1)  # a third slot, wrongly there, would have taken the last job by now
        third = producer.find_one(jobs[2].id or "")
        assert third is not None and third.state == JobState.PENDING
        release.touch()
        done = [wait_settled(producer, job) for job in jobs]
    finally:
        worker.stop()
        delete_queues(producer, queue)
    assert [job.state for job in done] == [JobState.COMPLETED] * 3
    assert done[2].started_at is not None and done[0].settled_at is not None
    assert done[2].started_at >= min(d.settled_at for d in done[:2] if d.settled_at)
