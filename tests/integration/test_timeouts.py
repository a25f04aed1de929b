"""Timeouts and forced cancel on real workers (issue 14 points 4-5; ``adapter.celery.watchdog``).

The process ``stubborn`` ignores every notice and appends a line to a file every 0.1 s, so the
file shows when its body really stops. On prefork the watchdog kills the pool child after the
grace; on the threads pool it cannot, but the timeout is recorded all the same.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from adapter import CeleryJobQueueStrategy, Job, JobState
from tests.integration.conftest import SERVER_BROKERS, WorkerProcess
from tests.support import unique_queue, wait_for

#: Seconds a stopped job has to stop by itself before it is stopped by force, in these tests.
GRACE = "1"


def _settled(producer: CeleryJobQueueStrategy, job_id: str) -> Job | None:
    found = producer.find_one(job_id)
    return found if found is not None and found.is_settled else None


def _stopped_growing(ticks: Path) -> Callable[[], bool]:
    """A probe: True once the file kept its size between two calls (0.5 s apart at least)."""
    seen: list[tuple[int, float]] = []

    def probe() -> bool:
        size, now = ticks.stat().st_size if ticks.exists() else 0, time.monotonic()
        if seen and now - seen[-1][1] < 0.5:
            return False
        same = bool(seen) and seen[-1][0] == size and size > 0
        seen.append((size, now))
        return same

    return probe


@dataclass
class Prefork:
    """A started prefork worker with one pool process: ``stubborn`` on ``queue``, ``echo`` on
    ``queue-next``; ``ticks`` is the file the stubborn job writes."""

    queue: str
    worker: WorkerProcess
    ticks: Path
    #: Starts another worker like the first.
    another: Callable[[], WorkerProcess]


@pytest.fixture
def prefork(make_worker: Callable[..., WorkerProcess], tmp_path: Path) -> Prefork:
    queue = unique_queue("stubborn")

    def started() -> WorkerProcess:
        worker = make_worker(
            f"{queue}=stubborn,{queue}-next=echo",
            "--pool",
            "prefork",
            "--concurrency",
            "1",
            ADAPTER_STOP_GRACE=GRACE,
        )
        worker.start()
        return worker

    return Prefork(queue, started(), tmp_path / "ticks", started)


def _deliveries(worker: WorkerProcess, job_id: str, broker_url: str) -> int | None:
    """How many messages of ``job_id`` the worker received (Celery logs each); None on Redis.

    The tests' Redis database is shared: another test's worker hands back (kombu's, or the
    adapter's orphan recovery) every message unacknowledged for longer than its own short
    heartbeat timeout, ours included, so a running job's message may come again (dropped at
    claim). RabbitMQ queues are this test's own.
    """
    if not broker_url.startswith("amqp"):
        return None
    return worker.log_text().count(f"Task adapter.run_job[{job_id}] received")


def _served_by_a_new_child(producer: CeleryJobQueueStrategy, queue: str, ticks: list[str]) -> None:
    """The worker (one pool process) runs the next job, in a child other than the killed ones."""
    follow = producer.add(Job(queue_name=f"{queue}-next", data={"n": 1}))
    done = wait_for(lambda: _settled(producer, str(follow.id)), "the next job", timeout=30)
    assert done.state == JobState.COMPLETED
    assert str(done.result["pid"]) not in {line.split(" pid ")[1] for line in ticks}


@SERVER_BROKERS
def test_a_job_past_its_timeout_is_stopped_and_fails_with_the_timeout_error(
    producer: CeleryJobQueueStrategy, prefork: Prefork, broker_url: str
) -> None:
    queue, worker, ticks = prefork.queue, prefork.worker, prefork.ticks
    job = producer.add(
        Job(queue_name=queue, data={"ticks_file": str(ticks)}, retries=1), timeout=1.5
    )
    assert job.id is not None
    failed = wait_for(
        lambda: _settled(producer, str(job.id)),
        "the job to settle after two timed-out attempts",
        timeout=60,
        report=lambda: (producer.find_one(str(job.id)), worker.log_text()[-3000:]),
    )
    # Both attempts ran out of time: the retry kept the job's own timeout.
    assert failed.state == JobState.FAILED
    assert failed.attempts == 2
    assert failed.error == "timed out after 1.5 s"
    wait_for(_stopped_growing(ticks), "the process body to stop writing", timeout=10)
    lines = ticks.read_text().splitlines()
    assert {line.split(" pid ")[0] for line in lines} == {"attempt 1", "attempt 2"}
    assert len({line.split(" pid ")[1] for line in lines}) == 2  # each child was replaced
    assert _deliveries(worker, str(job.id), broker_url) in {2, None}  # the first and its retry
    _served_by_a_new_child(producer, queue, lines)


@SERVER_BROKERS
def test_a_cancelled_job_that_ignores_the_notice_is_stopped_and_never_runs_again(
    producer: CeleryJobQueueStrategy, prefork: Prefork, broker_url: str
) -> None:
    queue, worker, ticks = prefork.queue, prefork.worker, prefork.ticks
    job = producer.add(Job(queue_name=queue, data={"ticks_file": str(ticks)}, retries=3))
    wait_for(lambda: ticks.exists() and ticks.stat().st_size > 0, "the job to run", timeout=30)
    producer.cancel_job(str(job.id))
    wait_for(_stopped_growing(ticks), "the process body to stop writing", timeout=20)
    assert "killing its pool process" in worker.log_text()
    size = ticks.stat().st_size
    _served_by_a_new_child(producer, queue, ticks.read_text().splitlines())
    # The cancelled job never ran again.
    cancelled = producer.find_one(str(job.id))
    assert cancelled is not None
    assert (cancelled.state, cancelled.attempts) == (JobState.CANCELLED, 1)
    assert {line.split(" pid ")[0] for line in ticks.read_text().splitlines()} == {"attempt 1"}
    assert ticks.stat().st_size == size
    # Its message was acknowledged before the kill: a worker started after this one's warm
    # stop (which hands back the messages it holds unacknowledged) never receives it.
    worker.stop()
    after = prefork.another()
    _served_by_a_new_child(producer, queue, [])
    assert _deliveries(worker, str(job.id), broker_url) in {1, None}
    assert _deliveries(after, str(job.id), broker_url) in {0, None}


@SERVER_BROKERS
def test_on_the_threads_pool_the_timeout_is_recorded_without_a_forced_stop(
    producer: CeleryJobQueueStrategy, make_worker: Callable[..., WorkerProcess], tmp_path: Path
) -> None:
    queue = unique_queue("timeout-threads")
    worker = make_worker(
        f"{queue}=stubborn",
        "--pool",
        "threads",
        "--concurrency",
        "2",
        ADAPTER_STOP_GRACE=GRACE,
        ADAPTER_JOB_TIMEOUT="1",  # the worker-wide default
    )
    worker.start()
    ticks = tmp_path / "ticks"
    job = producer.add(Job(queue_name=queue, data={"ticks_file": str(ticks)}))
    failed = wait_for(
        lambda: _settled(producer, str(job.id)),
        "the timeout to be recorded",
        timeout=30,
        report=lambda: worker.log_text()[-3000:],
    )
    assert (failed.state, failed.error) == (JobState.FAILED, "timed out after 1 s")
    wait_for(  # the watchdog's force step, a grace after the timeout is recorded
        lambda: "cannot stop a running job on the" in worker.log_text(),
        "the worker to say it cannot stop the job",
        timeout=30,
        report=lambda: worker.log_text()[-3000:],
    )


pytestmark = pytest.mark.timeout(180)
