"""Queue controls through the service and an embedded worker (memory broker and store), and
the gate's rules (``adapter.control``) on their own."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from celery import Celery

from adapter import CeleryJobQueueStrategy, Job, JobQueueService, JobState
from adapter.control import (
    MAX_WAIT_S,
    MIN_WAIT_S,
    QueueControl,
    RateLimit,
    check_rate_limit,
    controllable,
    decide,
)
from adapter.errors import InvalidQueueControlError
from adapter.store.memory import MemoryJobStore
from tests.support import unique_queue, wait_job


@pytest.fixture
def strategy() -> Iterator[CeleryJobQueueStrategy]:
    app = Celery("controls")
    app.config_from_object("celeryconfig")
    app.conf.update(broker_url="memory://", worker_hijack_root_logger=False)
    made = CeleryJobQueueStrategy(app, store=MemoryJobStore(), concurrency=2)
    yield made
    made.destroy()


def echo(job: Job) -> object:
    """Return the job's data."""
    return job.data


def test_rate_limits_are_read_in_seconds_minutes_and_hours() -> None:
    assert RateLimit.parse("100/m") == RateLimit(100, 60.0)
    assert RateLimit.parse(" 10 / s ") == RateLimit(10, 1.0)
    assert check_rate_limit("5 /h") == "5/h"
    for bad in ("100", "1/d", "0/s", "x/m", "-1/s"):
        with pytest.raises(InvalidQueueControlError, match="rate_limit"):
            RateLimit.parse(bad)


def test_the_gate_waits_for_the_oldest_start_to_leave_the_window() -> None:
    control = QueueControl(rate_limit="2/s")
    answer = decide(
        control, now_s=100.0, started=2, nth_newest_s=99.5, live_slots=0, has_slot=False
    )
    assert not answer.run and answer.reason == "rate limit"
    assert 0.6 <= answer.wait_s <= MAX_WAIT_S  # 99.5 leaves after 1 s and the margin
    paused = decide(
        QueueControl(paused=True),
        now_s=0,
        started=0,
        nth_newest_s=None,
        live_slots=0,
        has_slot=False,
    )
    assert not paused.run and MIN_WAIT_S <= paused.wait_s <= MAX_WAIT_S


def test_the_service_stores_limits_and_reports_pauses(strategy: CeleryJobQueueStrategy) -> None:
    service = JobQueueService(strategy, prefix="p-")
    name = unique_queue("svc")
    service.create_queue(name, echo, concurrency=3, rate_limit="60/m")
    assert strategy.queues.control(f"p-{name}") == QueueControl(concurrency=3, rate_limit="60/m")
    assert [info.paused for info in service.get_job_queues()] == [False]
    service.pause_queue(name)
    assert [info.paused for info in service.get_job_queues()] == [True]
    service.resume_queue(name)
    assert [info.paused for info in service.get_job_queues()] == [False]
    with pytest.raises(InvalidQueueControlError, match="concurrency 0"):
        service.create_queue(unique_queue("bad"), echo, concurrency=0)


def test_a_strategy_without_controls_is_named(strategy: CeleryJobQueueStrategy) -> None:
    with pytest.raises(InvalidQueueControlError, match="object cannot pause"):
        controllable(object())
    assert controllable(strategy) is strategy


def test_a_paused_queue_on_an_embedded_worker_runs_its_jobs_only_once_resumed(
    strategy: CeleryJobQueueStrategy,
) -> None:
    queue = unique_queue("emb")
    strategy.start(queue, echo)
    strategy.run_embedded_worker()
    strategy.pause_queue(queue)
    job = strategy.add(Job(queue_name=queue, data={"n": 1}))
    until = time.monotonic() + 1.5  # absence of a start needs a window to watch
    while time.monotonic() < until:
        found = strategy.find_one(job.id or "")
        assert found is not None and found.state == JobState.PENDING
        time.sleep(0.1)
    strategy.resume_queue(queue)
    done = wait_job(strategy, job.id or "", lambda found: found.is_settled, "settled")
    assert (done.state, done.result, done.attempts) == (JobState.COMPLETED, {"n": 1}, 1)
