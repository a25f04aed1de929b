"""Only a process that asks for it runs jobs itself; declaring queues runs none."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest
from celery import Celery

from adapter import CeleryJobQueueStrategy, Job, JobState
from adapter.store.memory import MemoryJobStore
from tests.support import unique_queue, wait_job


@pytest.fixture
def strategy() -> Iterator[CeleryJobQueueStrategy]:
    app = Celery("opt-in")
    app.config_from_object("celeryconfig")
    app.conf.update(broker_url="memory://", worker_hijack_root_logger=False)
    made = CeleryJobQueueStrategy(app, store=MemoryJobStore())
    yield made
    made.destroy()


def _embedded_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name == "adapter-embedded-worker"]


def echo(job: Job) -> object:
    """Return the job's data."""
    return job.data


def test_starting_a_queue_runs_no_job_in_this_process(strategy: CeleryJobQueueStrategy) -> None:
    queue = unique_queue("declared")
    strategy.start(queue, echo)
    job = strategy.add(Job(queue_name=queue, data={"n": 1}))

    assert _embedded_threads() == []
    assert strategy.running_queues() == [queue]
    found = strategy.find_one(job.id or "")
    assert found is not None and found.state == JobState.PENDING


def test_asking_for_an_embedded_worker_runs_the_started_queues(
    strategy: CeleryJobQueueStrategy,
) -> None:
    before, after = unique_queue("before"), unique_queue("after")
    strategy.start(before, echo)
    strategy.run_embedded_worker()
    strategy.start(after, echo)
    jobs = [strategy.add(Job(queue_name=name, data={"q": name})) for name in (before, after)]

    for job in jobs:
        done = wait_job(strategy, job.id or "", lambda j: j.is_settled, "settled")
        assert done.state == JobState.COMPLETED
        assert done.result == {"q": job.queue_name}
