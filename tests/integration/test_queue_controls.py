"""Pause, cluster-wide concurrency and rate limits with real workers, on Redis and RabbitMQ.

Two ``celery worker`` processes (prefork) consume each queue; what they did is read from the
job store (``started_at``, ``settled_at``, states), never from timings of the test itself.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path

from adapter import CeleryJobQueueStrategy, Job, JobState
from adapter.job import utcnow
from tests.integration.conftest import SERVER_BROKERS, WorkerProcess
from tests.support import delete_queues, unique_queue, wait_for, wait_job

#: Short heartbeats, so that a killed worker's slot frees within seconds.
LIVENESS = {"ADAPTER_HEARTBEAT_INTERVAL": "0.5", "ADAPTER_HEARTBEAT_TIMEOUT": "2"}
#: How long a pause may take to reach every worker ("within about a second").
PAUSE_REACH = timedelta(seconds=1)


def _jobs(producer: CeleryJobQueueStrategy, queue: str) -> list[Job]:
    return producer.find_many({"filter": {"queueName": {"eq": queue}}, "take": 1000}).items


def _all_completed(producer: CeleryJobQueueStrategy, queue: str, count: int) -> list[Job]:
    def probe() -> list[Job] | None:
        found = _jobs(producer, queue)
        done = [job for job in found if job.state == JobState.COMPLETED]
        return found if len(done) == count else None

    return wait_for(probe, f"{count} completed jobs on {queue}", timeout=120)


def _started_after(jobs: list[Job], moment: datetime) -> list[Job]:
    return [job for job in jobs if job.started_at is not None and job.started_at > moment]


def _most_at_once(jobs: list[Job]) -> int:
    """The largest number of jobs whose [started_at, settled_at] intervals overlap."""
    events: list[tuple[datetime, int]] = []
    for job in jobs:
        assert job.started_at is not None and job.settled_at is not None
        events += [(job.started_at, 1), (job.settled_at, -1)]
    running = most = 0
    for _, step in sorted(events, key=lambda event: (event[0], event[1])):
        running += step
        most = max(most, running)
    return most


def _paused_in(worker: WorkerProcess, queue: str, times: int = 1) -> bool:
    return worker.log_text().count(f"queue {queue!r} is paused") >= times


def _observe_no_start(producer: CeleryJobQueueStrategy, queue: str, after: datetime) -> None:
    """Watch the store for two seconds: no job of ``queue`` starts after ``after``."""
    until = time.monotonic() + 2
    while time.monotonic() < until:
        assert _started_after(_jobs(producer, queue), after) == []
        time.sleep(0.1)


@SERVER_BROKERS
def test_a_paused_queue_starts_nothing_until_resumed_even_after_a_worker_restart(
    producer: CeleryJobQueueStrategy, make_worker: Callable[..., WorkerProcess], tmp_path: Path
) -> None:
    queue = unique_queue("paused")
    run_log = tmp_path / "runs.log"
    run_log.touch()
    env = {"TEST_RUN_LOG": str(run_log), "TEST_NAP_S": "0.3"}
    workers = [make_worker(f"{queue}=logged", "-P", "prefork", "-c", "2", **env) for _ in "ab"]
    try:
        for worker in workers:
            worker.start()
        before = [producer.add(Job(queue_name=queue, data={"n": n})) for n in range(6)]
        wait_job(producer, before[0].id or "", lambda job: job.started_at is not None, "started")
        producer.pause_queue(queue)
        paused_at = utcnow()
        during = [producer.add(Job(queue_name=queue, data={"n": n})) for n in range(6, 12)]
        for worker in workers:
            wait_for(lambda: _paused_in(worker, queue), "the worker to stop consuming the queue")  # noqa: B023
        _observe_no_start(producer, queue, paused_at + PAUSE_REACH)
        assert producer.queue_controls()[queue].paused
        workers[0].stop()
        workers[0].start()
        wait_for(
            lambda: _paused_in(workers[0], queue, times=2), "the restarted worker to see the pause"
        )
        _observe_no_start(producer, queue, paused_at + PAUSE_REACH)
        waiting = [producer.find_one(job.id or "") for job in during]
        assert {job.state for job in waiting if job is not None} == {JobState.PENDING}
        resumed_at = utcnow()
        producer.resume_queue(queue)
        done = _all_completed(producer, queue, len(before) + len(during))
    finally:
        for worker in workers:
            worker.stop()
        delete_queues(producer, queue)
    by_id = {job.id: job for job in done}
    for job in during:  # every job added during the pause started only after the resume
        started = by_id[job.id].started_at
        assert started is not None and started > resumed_at
        assert by_id[job.id].attempts == 1  # waiting spent no attempt
    assert not producer.queues.control(queue).paused


@SERVER_BROKERS
def test_concurrency_bounds_running_jobs_across_workers(
    producer: CeleryJobQueueStrategy, make_worker: Callable[..., WorkerProcess], tmp_path: Path
) -> None:
    queue, other = unique_queue("conc"), unique_queue("free")
    run_log = tmp_path / "runs.log"
    run_log.touch()
    producer.set_queue_limits(queue, concurrency=2)
    env = {"TEST_RUN_LOG": str(run_log), "TEST_NAP_S": "0.4"}
    queues = f"{queue}=logged,{other}=echo"
    workers = [make_worker(queues, "-P", "prefork", "-c", "4", **env) for _ in "ab"]
    jobs = [producer.add(Job(queue_name=queue, data={"n": n})) for n in range(12)]
    others = [producer.add(Job(queue_name=other, data={"n": n})) for n in range(4)]
    sampled: list[int] = []

    def all_done() -> list[Job] | None:
        found = _jobs(producer, queue)
        sampled.append(sum(job.state == JobState.RUNNING for job in found))
        return found if all(job.state == JobState.COMPLETED for job in found) else None

    try:
        for worker in workers:
            worker.start()
        done = wait_for(all_done, "every job to complete", timeout=120)
        unlimited = _all_completed(producer, other, len(others))
    finally:
        for worker in workers:
            worker.stop()
        delete_queues(producer, queue, other)
    assert len(done) == len(jobs)
    assert max(sampled) <= 2
    assert _most_at_once(done) <= 2
    assert all(job.attempts == 1 for job in done)
    # the waiting jobs held no pool process: the other queue's jobs ran meanwhile
    last_start = max(job.started_at for job in done if job.started_at is not None)
    assert all(job.settled_at is not None and job.settled_at < last_start for job in unlimited)


@SERVER_BROKERS
def test_a_killed_workers_slot_frees_after_the_heartbeat_timeout(
    producer: CeleryJobQueueStrategy, make_worker: Callable[..., WorkerProcess], tmp_path: Path
) -> None:
    queue = unique_queue("slot")
    producer.set_queue_limits(queue, concurrency=1)
    held = producer.add(Job(queue_name=queue, data={"release_file": str(tmp_path / "held")}))
    first = make_worker(f"{queue}=gated", "-P", "prefork", "-c", "2", **LIVENESS)
    second = make_worker(f"{queue}=gated", "-P", "prefork", "-c", "2", **LIVENESS)
    try:
        first.start()
        wait_job(producer, held.id or "", lambda job: job.state == JobState.RUNNING, "running")
        (tmp_path / "next").touch()
        waiting = producer.add(Job(queue_name=queue, data={"release_file": str(tmp_path / "next")}))
        first.kill()  # holding the only slot
        (tmp_path / "held").touch()
        second.start()
        done = _all_completed(producer, queue, 2)
    finally:
        second.stop()
        delete_queues(producer, queue)
    assert {job.id for job in done} == {held.id, waiting.id}
    assert _most_at_once(done) == 1


@SERVER_BROKERS
def test_a_rate_limit_bounds_starts_in_every_window_across_workers(
    producer: CeleryJobQueueStrategy, make_worker: Callable[..., WorkerProcess]
) -> None:
    queue = unique_queue("rate")
    producer.set_queue_limits(queue, rate_limit="10/s")
    workers = [make_worker(f"{queue}=echo", "-P", "prefork", "-c", "4") for _ in "ab"]
    try:
        for worker in workers:
            worker.start()
        producer.add_many([Job(queue_name=queue, data={"n": n}) for n in range(50)])
        done = _all_completed(producer, queue, 50)
    finally:
        for worker in workers:
            worker.stop()
        delete_queues(producer, queue)
    starts = sorted(job.started_at for job in done if job.started_at is not None)
    assert len(starts) == 50
    for index, first in enumerate(starts):
        in_window = [at for at in starts[index:] if at < first + timedelta(seconds=1)]
        assert len(in_window) <= 10, " ".join(str(at.time()) for at in starts)
    assert all(job.attempts == 1 for job in done)
