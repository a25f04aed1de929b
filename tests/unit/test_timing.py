"""The timing options of add without servers: kombu's in-memory broker and the memory store.

What is published at once and what waits for the promoter, unique keys and debounce through the
strategy and the service, the promoter's round, reschedule, and the errors naming a bad option.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from adapter import CeleryJobQueueStrategy, InvalidJobError, Job, JobState
from adapter.celery.priority import broker_priority
from adapter.celery.promoter import Promoter
from adapter.errors import JobNotWaitingError, PublishError
from adapter.job import utcnow
from adapter.service import JobQueueService
from adapter.timing import MAX_DELAY_S, Timing
from tests.support import messages_waiting, unique_queue
from tests.unit import test_field_ranges

NOW = datetime(2030, 1, 1, tzinfo=UTC)


# A strategy on kombu's in-memory broker and the memory store, running no worker.
strategy = test_field_ranges.strategy


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"delay": 1, "run_at": NOW}, "give delay or run_at, not both"),
        ({"delay": -1}, r"delay is -1; it must be from 0 to"),
        ({"delay": float("nan")}, "delay is nan"),
        ({"delay": MAX_DELAY_S + 1}, "delay is"),
        ({"delay": "5"}, "delay must be a number of seconds, got '5'"),
        ({"run_at": "tomorrow"}, "run_at must be a datetime, got 'tomorrow'"),
        ({"debounce": 5}, "debounce needs a unique_key"),
        ({"debounce": 0, "unique_key": "k"}, "debounce must be more than 0 seconds"),
        ({"debounce": 5, "unique_key": "k", "delay": 1}, "debounce sets the start time"),
    ],
)
def test_a_bad_option_is_refused_naming_it(options: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidJobError, match=message):
        Timing(**options).apply(Job(queue_name="q"), NOW)


def test_options_become_the_job_s_fields() -> None:
    job = Timing(delay=90, priority=3, unique_key="k").apply(Job(queue_name="q"), NOW)
    assert (job.ready_at, job.priority, job.unique_key) == (NOW + timedelta(seconds=90), 3, "k")
    naive = Timing(run_at=datetime(2031, 1, 1)).apply(Job(queue_name="q"), NOW)
    assert naive.ready_at == datetime(2031, 1, 1, tzinfo=UTC)
    debounced = Timing(debounce=2, unique_key="k").apply(Job(queue_name="q"), NOW)
    assert debounced.ready_at == NOW + timedelta(seconds=2)


def test_a_priority_out_of_range_publishes_nothing(strategy: CeleryJobQueueStrategy) -> None:
    queue = unique_queue("timing")
    with pytest.raises(InvalidJobError, match="priority is 10; it must be an integer from 0 to 9"):
        strategy.add(Job(queue_name=queue), priority=10)
    assert messages_waiting(strategy, queue) == 0


def test_a_delayed_job_is_stored_and_published_by_the_promoter_when_due(
    strategy: CeleryJobQueueStrategy,
) -> None:
    queue = unique_queue("timing")
    later = strategy.add(Job(queue_name=queue, data=1), delay=3600)
    due = strategy.add(Job(queue_name=queue, data=2), run_at=utcnow() - timedelta(seconds=1))
    now = strategy.add(Job(queue_name=queue, data=3))
    assert messages_waiting(strategy, queue) == 1  # only the job without a time
    stored = strategy.find_one(later.id or "")
    assert stored is not None and stored.state is JobState.PENDING and stored.ready_at
    promoted = Promoter(strategy.store, strategy._publisher).promote_once()
    assert [job.id for job in promoted] == [due.id]
    assert messages_waiting(strategy, queue) == 2
    assert now.ready_at is None


def test_a_failed_publish_marks_the_job_due_again(strategy: CeleryJobQueueStrategy) -> None:
    class Refusing:
        def publish(self, job: Job) -> None:
            raise PublishError("broker down")

    job = strategy.add(Job(queue_name=unique_queue("timing")), delay=0)
    assert [found.id for found in Promoter(strategy.store, Refusing()).promote_once()] == [job.id]
    assert [found.id for found in strategy.store.take_due(utcnow(), 10)] == [job.id]


def test_add_many_publishes_the_ready_jobs_and_stores_the_delayed(
    strategy: CeleryJobQueueStrategy,
) -> None:
    queue = unique_queue("timing")
    added = strategy.add_many([Job(queue_name=queue, data=n) for n in range(3)], delay=60)
    assert all(job.ready_at is not None for job in added)
    assert messages_waiting(strategy, queue) == 0
    assert strategy.find_many({"filter": {"queueName": {"eq": queue}}}).total_items == 3
    with pytest.raises(InvalidJobError, match="add_many takes no unique_key"):
        strategy.add_many([Job(queue_name=queue, unique_key="k")])


def test_a_unique_key_returns_the_waiting_job(strategy: CeleryJobQueueStrategy) -> None:
    queue = unique_queue("timing")
    first = strategy.add(Job(queue_name=queue, data=1), unique_key="sku-1")
    again = strategy.add(Job(queue_name=queue, data=2), unique_key="sku-1")
    assert (again.id, again.data) == (first.id, 1)
    assert messages_waiting(strategy, queue) == 1


def test_the_service_adds_with_options_and_debounces(strategy: CeleryJobQueueStrategy) -> None:
    service = JobQueueService(strategy)
    queue = service.create_queue(unique_queue("timing"), lambda job: None)
    first = queue.add({"n": 1}, unique_key="burst", debounce=30)
    last = queue.add({"n": 2}, unique_key="burst", debounce=30)
    assert last.id == first.id
    stored = strategy.find_one(first.id or "")
    assert stored is not None and stored.data == {"n": 2}
    assert stored.ready_at is not None and stored.ready_at > utcnow() + timedelta(seconds=20)
    urgent = queue.add({"n": 3}, priority=9, delay=5)
    assert (urgent.priority, urgent.ready_at is not None) == (9, True)
    assert messages_waiting(strategy, queue.name) == 0
    many = queue.add_many([1, 2], priority=2)
    assert [job.priority for job in many] == [2, 2]


def test_reschedule_moves_a_waiting_job_and_refuses_a_started_one(
    strategy: CeleryJobQueueStrategy,
) -> None:
    queue = unique_queue("timing")
    job = strategy.add(Job(queue_name=queue), delay=3600)
    when = datetime(2040, 1, 1)  # naive: UTC
    assert strategy.reschedule_job(job.id or "", when).ready_at == when.replace(tzinfo=UTC)
    strategy.cancel_job(job.id or "")
    with pytest.raises(JobNotWaitingError, match="is CANCELLED: only a job that has not started"):
        strategy.reschedule_job(job.id or "", when)
    with pytest.raises(JobNotWaitingError, match="is unknown"):
        strategy.reschedule_job("no-such-job", when)


def test_each_broker_reads_the_priority_its_own_way() -> None:
    assert [broker_priority("amqp", p) for p in (0, 5, 9)] == [None, 5, 9]
    assert [broker_priority("redis", p) for p in (0, 5, 9)] == [None, 5, 9]
    assert broker_priority("filesystem", 9) is None


def test_the_service_refuses_a_unique_key_waiting_for_a_transaction(
    strategy: CeleryJobQueueStrategy,
) -> None:
    queue = JobQueueService(strategy).create_queue(unique_queue("timing"), lambda job: None)
    with pytest.raises(InvalidJobError, match="cannot wait for a transaction"):
        queue.add({"n": 1}, transaction=object(), unique_key="k")
