"""Delayed, prioritised and debounced jobs on real ``celery worker`` processes.

Times are asserted on what the store recorded (``ready_at`` against ``started_at``), never on
the test's own clock: a delayed job never starts before its time, and starts within a second
of it (the promoter polls every 0.25 s).
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from celery import Celery

from adapter import CeleryJobQueueStrategy, Job, JobState
from adapter.job import utcnow
from tests.integration.conftest import SERVER_BROKERS, WorkerProcess
from tests.support import delete_queues, unique_queue, wait_job, wait_settled

#: How late after its ready_at a delayed job may start.
PUNCTUALITY = timedelta(seconds=1)


def started_on_time(job: Job) -> timedelta:
    """Return how long after its ``ready_at`` the settled ``job`` started; never before."""
    assert job.ready_at is not None and job.started_at is not None
    late = job.started_at - job.ready_at
    assert late >= timedelta(0), f"started {-late} before its time"
    return late


@SERVER_BROKERS
def test_a_delayed_job_starts_at_its_time_not_before(
    producer: CeleryJobQueueStrategy, make_worker: Callable[..., WorkerProcess]
) -> None:
    queue = unique_queue("delay")
    worker = make_worker(queue)
    try:
        worker.start()
        job = producer.add(Job(queue_name=queue, data="later"), delay=3)
        assert job.ready_at is not None and job.ready_at - job.created_at >= timedelta(seconds=3)
        pending = producer.find_one(job.id or "")
        assert pending is not None and pending.state is JobState.PENDING
        done = wait_settled(producer, job)
    finally:
        worker.stop()
        delete_queues(producer, queue)
    assert done.state is JobState.COMPLETED
    assert started_on_time(done) <= PUNCTUALITY


@SERVER_BROKERS
def test_a_delayed_job_survives_a_worker_restart(
    producer: CeleryJobQueueStrategy, make_worker: Callable[..., WorkerProcess]
) -> None:
    queue = unique_queue("delay-restart")
    first, second = make_worker(queue), make_worker(queue)
    try:
        first.start()
        job = producer.add(Job(queue_name=queue, data="after a restart"), delay=4)
        first.kill()
        second.start()
        done = wait_settled(producer, job)
    finally:
        second.stop()
        delete_queues(producer, queue)
    assert done.state is JobState.COMPLETED
    started_on_time(done)


@SERVER_BROKERS
def test_a_delayed_job_can_be_cancelled_or_rescheduled_until_it_starts(
    producer: CeleryJobQueueStrategy, make_worker: Callable[..., WorkerProcess]
) -> None:
    queue = unique_queue("delay-move")
    worker = make_worker(queue)
    try:
        worker.start()
        cancelled = producer.add(Job(queue_name=queue, data="never"), delay=1)
        moved = producer.add(Job(queue_name=queue, data="sooner"), delay=3600)
        producer.cancel_job(cancelled.id or "")
        new_time = utcnow() + timedelta(seconds=2)
        assert producer.reschedule_job(moved.id or "", new_time).ready_at == new_time
        done = wait_settled(producer, moved)
        with pytest.raises(Exception, match="only a job that has not started"):
            producer.reschedule_job(moved.id or "", new_time)
    finally:
        worker.stop()
        delete_queues(producer, queue)
    assert done.state is JobState.COMPLETED and started_on_time(done) <= PUNCTUALITY
    never = producer.find_one(cancelled.id or "")
    assert never is not None
    assert (never.state, never.attempts, never.started_at) == (JobState.CANCELLED, 0, None)


@SERVER_BROKERS
@pytest.mark.parametrize("adds", ["one by one", "add_many"])
def test_a_priority_9_job_added_last_starts_before_the_waiting_priority_0_jobs(
    producer: CeleryJobQueueStrategy,
    make_worker: Callable[..., WorkerProcess],
    tmp_path: Path,
    adds: str,
) -> None:
    queue = unique_queue("priority")
    producer.app.conf.adapter_priority_queues = [queue]  # RabbitMQ: declared x-max-priority
    runs, release = tmp_path / "runs", tmp_path / "release"
    gate = {"runs_file": str(runs), "release_file": str(release)}
    worker = make_worker(f"{queue}=counted", "-c", "1", ADAPTER_PRIORITY_QUEUES=queue)
    try:
        worker.start()
        busy = producer.add(Job(queue_name=queue, data=gate))
        wait_job(producer, busy.id or "", lambda job: job.state is JobState.RUNNING, "running")
        if adds == "add_many":  # one call: one LPUSH per priority step on Redis
            *backlog, urgent = producer.add_many(
                [*(Job(queue_name=queue, data=gate) for _ in range(5)),
                 Job(queue_name=queue, data=gate, priority=9)]
            )  # fmt: skip
        else:
            backlog = [producer.add(Job(queue_name=queue, data=gate)) for _ in range(5)]
            urgent = producer.add(Job(queue_name=queue, data=gate), priority=9)
        release.touch()
        for job in (*backlog, urgent):
            wait_settled(producer, job)
    finally:
        worker.stop()
        delete_queues(producer, queue)
    order = [line.split()[0] for line in runs.read_text().splitlines()]
    assert order[:2] == [busy.id, urgent.id]
    assert sorted(order[2:]) == sorted(str(job.id) for job in backlog)


def _debounced_adds(
    broker_url: str, store_url: str, queue: str, index: int, others_done: Any, done: Any
) -> None:
    """Add 50 jobs with one key; process 0 adds its last one once the others are done."""
    app = Celery(f"debounce-{index}")
    app.config_from_object("celeryconfig")
    app.conf.broker_url = broker_url
    strategy = CeleryJobQueueStrategy(app, store=store_url)
    try:
        for n in range(50):
            if index == 0 and n == 49:
                others_done.wait(60)
            data = {"process": index, "n": n}
            strategy.add(Job(queue_name=queue, data=data), unique_key="burst", debounce=3)
    finally:
        strategy.destroy()
        done.put(index)


@pytest.mark.parametrize("broker_url", ["redis"], indirect=True)
def test_200_debounced_adds_from_4_processes_run_once_with_the_last_data(
    producer: CeleryJobQueueStrategy,
    broker_url: str,
    store_url: str,
    make_worker: Callable[..., WorkerProcess],
) -> None:
    queue = unique_queue("debounce")
    worker = make_worker(queue)
    context = multiprocessing.get_context("spawn")
    others_done, done = context.Event(), context.Queue()
    adders = [
        context.Process(
            target=_debounced_adds, args=(broker_url, store_url, queue, n, others_done, done)
        )
        for n in range(4)
    ]
    try:
        worker.start()
        for adder in adders:
            adder.start()
        finished = [done.get(timeout=120) for _ in range(3)]
        assert 0 not in finished
        others_done.set()
        done.get(timeout=60)
        for adder in adders:
            adder.join(60)
        assert [adder.exitcode for adder in adders] == [0] * 4
        jobs = producer.find_many({"filter": {"queueName": {"eq": queue}}}).items
        assert len(jobs) == 1
        ran = wait_settled(producer, jobs[0])
        assert producer.find_many({"filter": {"queueName": {"eq": queue}}}).total_items == 1
    finally:
        worker.stop()
        delete_queues(producer, queue)
    assert (ran.state, ran.attempts) == (JobState.COMPLETED, 1)
    assert ran.result["data"] == {"process": 0, "n": 49}
