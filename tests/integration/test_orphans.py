"""Jobs whose message Redis lost are published again (``adapter.celery.orphans``), on real Redis.

kombu's Redis transport takes a message off its list before it records it as unacknowledged;
a message taken as the server goes away is in neither place. ``republish_unqueued_jobs``
finds the waiting jobs without a message and publishes them again, and nothing else.

Each test's kombu keys carry a ``global_keyprefix`` of its own: no worker of another test (or a
lock a killed one left behind) shares them, and the prefix itself is exercised.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest
import redis
from celery import Celery

from adapter import CeleryJobQueueStrategy, Job, JobState
from adapter.celery.orphans import LOCK_KEY, republish_unqueued_jobs, restore_orphaned_messages
from adapter.celery.routing import celery_queue
from adapter.job import utcnow
from tests.support import unique_queue, wait_for

#: The job queue of every test here (the key prefix keeps the tests apart).
QUEUE = "orphans"
#: How long a worker's recovery lock lives here, in seconds (a heartbeat timeout).
LOCK_S = 1.0


@pytest.fixture
def prefix() -> str:
    return f"{unique_queue('orphans')}:"


@pytest.fixture
def client(redis_url: str, prefix: str) -> Iterator[redis.Redis]:
    """A plain client of the test database; every key of this test's prefix is deleted after."""
    made = redis.Redis.from_url(redis_url)
    yield made
    for key in made.scan_iter(match=f"{prefix}*"):
        made.delete(key)
    made.close()


@pytest.fixture
def strategy(
    redis_url: str, prefix: str, client: redis.Redis, tmp_path: Path
) -> Iterator[CeleryJobQueueStrategy]:
    app = Celery("orphans")
    app.config_from_object("celeryconfig")
    app.conf.broker_url = redis_url
    app.conf.broker_transport_options = {"global_keyprefix": prefix}
    made = CeleryJobQueueStrategy(
        app, store=f"sqlite:///{tmp_path / 'jobs.sqlite3'}", embedded_worker=False
    )
    yield made
    made.destroy()


@pytest.fixture
def queue_key(prefix: str) -> str:
    """The Redis list of this test's job queue."""
    return f"{prefix}{celery_queue(QUEUE)}"


def message_ids(client: redis.Redis, queue_key: str) -> list[str]:
    return sorted(json.loads(item)["headers"]["id"] for item in client.lrange(queue_key, 0, -1))


def republish(strategy: CeleryJobQueueStrategy, connected: datetime) -> list[Job] | None:
    return republish_unqueued_jobs(
        strategy.app, strategy.store, strategy._publisher.publish, connected, LOCK_S
    )


def test_only_waiting_jobs_without_a_message_are_published_again(
    strategy: CeleryJobQueueStrategy, client: redis.Redis, queue_key: str
) -> None:
    added = [strategy.add(Job(queue_name=QUEUE, data={"n": n})) for n in range(4)]
    strategy.flush()
    client.rpop(queue_key)  # taken as the server went away: jobs 0 and 1 lost
    client.rpop(queue_key)
    running = added[1].model_copy(update={"state": JobState.RUNNING, "attempts": 1})
    strategy.store.update(running)  # job 1 runs already: its message is not missing
    connected = utcnow()
    later = strategy.add(Job(queue_name=QUEUE, data={"n": "later"}))
    client.rpop(queue_key)  # job 2 lost too: created before this worker connected
    client.lpop(queue_key)  # a job created after: not this worker's to look at

    lost = republish(strategy, connected)

    assert lost is not None
    assert sorted(job.id or "" for job in lost) == sorted([added[0].id or "", added[2].id or ""])
    assert message_ids(client, queue_key) == sorted(
        job.id or "" for job in [added[0], added[2], added[3]]
    )
    assert later.id not in message_ids(client, queue_key)


def test_nothing_is_published_when_every_waiting_job_has_its_message(
    strategy: CeleryJobQueueStrategy, client: redis.Redis, queue_key: str
) -> None:
    added = [strategy.add(Job(queue_name=QUEUE, data={"n": n})) for n in range(3)]
    strategy.flush()
    with strategy.app.connection_for_read() as connection:  # one taken, not acknowledged
        taken = connection.default_channel.basic_get(celery_queue(QUEUE), no_ack=False)
        assert taken is not None
        connected = utcnow() + timedelta(seconds=1)

        lost = republish(strategy, connected)

        taken.requeue()
    assert lost == []
    assert message_ids(client, queue_key) == sorted(job.id or "" for job in added)


def test_it_asks_to_be_called_again_while_another_worker_holds_the_lock(
    strategy: CeleryJobQueueStrategy, client: redis.Redis, prefix: str
) -> None:
    strategy.add(Job(queue_name=QUEUE, data={"n": 1}))
    strategy.flush()
    client.set(f"{prefix}{LOCK_KEY}", "another worker", px=60_000)

    assert republish(strategy, utcnow()) is None


def test_a_lock_left_by_a_killed_worker_blocks_recovery_for_one_lock_period_only(
    strategy: CeleryJobQueueStrategy, client: redis.Redis, prefix: str, queue_key: str
) -> None:
    added = strategy.add(Job(queue_name=QUEUE, data={"n": 1}))
    strategy.flush()
    client.rpop(queue_key)  # its message lost
    client.set(f"{prefix}unacked_mutex", "a killed worker", px=300_000)  # kombu's, 5 minutes
    connected = utcnow() + timedelta(seconds=1)
    client.set(f"{prefix}{LOCK_KEY}", "a killed worker", px=int(LOCK_S * 1000))

    assert republish(strategy, connected) is None  # held: asked again next round
    lost = wait_for(lambda: republish(strategy, connected), "the lock to expire")

    assert [job.id for job in lost] == [added.id]  # kombu's lock did not stop it
    assert message_ids(client, queue_key) == [added.id]


def test_only_messages_of_waiting_jobs_go_back_from_unacked(
    strategy: CeleryJobQueueStrategy, client: redis.Redis, queue_key: str
) -> None:
    """A taken message goes back to its queue when its job waits; it stays unacknowledged when
    its job runs or is settled (a worker between the outcome write and the ack)."""
    jobs = {state: strategy.add(Job(queue_name=QUEUE, data=state.value)) for state in _STATES}
    strategy.flush()
    with strategy.app.connection_for_read() as connection:  # take every message, unacked
        channel = connection.default_channel
        taken = [channel.basic_get(celery_queue(QUEUE), no_ack=False) for _ in jobs]
        assert all(message is not None for message in taken) and not message_ids(client, queue_key)
        for state, job in jobs.items():
            if state is not JobState.PENDING:
                strategy.store.update(job.model_copy(update=_state_fields(state)))
        assert restore_orphaned_messages(strategy.app, strategy.store, older_than_s=0) == 1
        back = message_ids(client, queue_key)  # before the channel closes (it restores the rest)
    assert back == [jobs[JobState.PENDING].id]


#: One job per state: only the waiting one's message goes back.
_STATES = (JobState.PENDING, JobState.RUNNING, JobState.COMPLETED, JobState.CANCELLED)


def _state_fields(state: JobState) -> dict[str, object]:
    now = utcnow()
    if state is JobState.RUNNING:
        return {"state": state, "started_at": now, "attempts": 1}
    return {"state": state, "started_at": now, "settled_at": now, "attempts": 1}
