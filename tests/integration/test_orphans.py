"""Jobs whose message Redis lost are published again (``adapter.celery.orphans``), on real Redis.

kombu's Redis transport takes a message off its list before it records it as unacknowledged;
a message taken as the server goes away is in neither place. ``republish_unqueued_jobs``
finds the waiting jobs without a message and publishes them again, and nothing else.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from celery import Celery

from adapter import CeleryJobQueueStrategy, Job, JobState
from adapter.celery.orphans import republish_unqueued_jobs
from adapter.celery.routing import celery_queue
from adapter.job import utcnow
from tests.support import unique_queue


@pytest.fixture
def strategy(redis_url: str, tmp_path: Path) -> Iterator[CeleryJobQueueStrategy]:
    app = Celery("orphans")
    app.config_from_object("celeryconfig")
    app.conf.broker_url = redis_url
    made = CeleryJobQueueStrategy(
        app, store=f"sqlite:///{tmp_path / 'jobs.sqlite3'}", embedded_worker=False
    )
    yield made
    made.destroy()


@pytest.fixture
def queue(strategy: CeleryJobQueueStrategy) -> Iterator[str]:
    name = unique_queue("orphans")
    yield name
    with strategy.app.connection_for_write() as connection:
        connection.default_channel.client.delete(celery_queue(name))


def redis_client(strategy: CeleryJobQueueStrategy) -> Any:
    return strategy.app.connection_for_write().default_channel.client


def message_ids(strategy: CeleryJobQueueStrategy, queue: str) -> list[str]:
    raw = redis_client(strategy).lrange(celery_queue(queue), 0, -1)
    return sorted(json.loads(item)["headers"]["id"] for item in raw)


def test_only_waiting_jobs_without_a_message_are_published_again(
    strategy: CeleryJobQueueStrategy, queue: str
) -> None:
    added = [strategy.add(Job(queue_name=queue, data={"n": n})) for n in range(4)]
    strategy.flush()
    client = redis_client(strategy)
    client.rpop(celery_queue(queue))  # taken as the server went away: jobs 0 and 1 lost
    client.rpop(celery_queue(queue))
    running = added[1].model_copy(update={"state": JobState.RUNNING, "attempts": 1})
    strategy.store.update(running)  # job 1 runs already: its message is not missing
    connected = utcnow()
    later = strategy.add(Job(queue_name=queue, data={"n": "later"}))
    client.rpop(celery_queue(queue))  # job 2 lost too: created before this worker connected
    client.lpop(celery_queue(queue))  # a job created after: not this worker's to look at

    lost = republish_unqueued_jobs(strategy.app, strategy.store, strategy._publish, connected)

    assert sorted(job.id or "" for job in lost) == sorted([added[0].id or "", added[2].id or ""])
    assert message_ids(strategy, queue) == sorted(
        job.id or "" for job in [added[0], added[2], added[3]]
    )
    assert later.id not in message_ids(strategy, queue)


def test_nothing_is_published_when_every_waiting_job_has_its_message(
    strategy: CeleryJobQueueStrategy, queue: str
) -> None:
    added = [strategy.add(Job(queue_name=queue, data={"n": n})) for n in range(3)]
    strategy.flush()
    with strategy.app.connection_for_read() as connection:  # one taken, not acknowledged
        taken = connection.default_channel.basic_get(celery_queue(queue), no_ack=False)
        assert taken is not None
        connected = utcnow() + timedelta(seconds=1)

        lost = republish_unqueued_jobs(strategy.app, strategy.store, strategy._publish, connected)

        taken.requeue()
    assert lost == []
    assert message_ids(strategy, queue) == sorted(job.id or "" for job in added)
