"""add_many without servers: every job checked first, errors naming the index, the service."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from celery import Celery

from adapter import (
    BulkPublishError,
    CeleryJobQueueStrategy,
    DuplicateJobError,
    InvalidJobError,
    InvalidQueueNameError,
    Job,
    JobDataError,
)
from adapter.bulk import checked_batch
from adapter.service import BUFFERED_JOB_ID, JobQueueService
from tests.factories import JoiningBuffer
from tests.private_brokers import free_port
from tests.unit.test_buffer import RecordingStrategy


def test_checked_batch_returns_the_jobs_in_order() -> None:
    jobs = [Job(queue_name="q", data=n) for n in range(3)]
    assert checked_batch(iter(jobs)) == jobs


def test_a_job_changed_after_it_was_built_is_refused_naming_its_index() -> None:
    jobs = [Job(queue_name="q", data=n) for n in range(4)]
    jobs[2].queue_name = "has space"
    with pytest.raises(InvalidQueueNameError, match=r"^jobs\[2\]: queue name 'has space'"):
        checked_batch(jobs)


@pytest.mark.parametrize(
    ("field", "value"), [("created_at", "yesterday"), ("retries", -1), ("progress", 101)]
)
def test_a_job_like_the_valid_ones_before_it_but_for_one_bad_field_is_refused(
    field: str, value: object
) -> None:
    jobs = [Job(queue_name="q", data=n) for n in range(4)]
    setattr(jobs[3], field, value)
    with pytest.raises(InvalidJobError, match=rf"^jobs\[3\]: invalid job: {field}"):
        checked_batch(jobs)


def test_data_that_is_not_json_is_refused_naming_its_index_and_key_path() -> None:
    jobs = [Job(queue_name="q", data={"ok": 1}), Job(queue_name="q", data={"bad": {1, 2}})]
    with pytest.raises(JobDataError, match=r"^jobs\[1\]: data is not JSON-serializable: .*bad"):
        checked_batch(jobs)


def test_data_over_the_limit_is_refused_naming_its_index() -> None:
    jobs = [Job(queue_name="q", data="small"), Job(queue_name="q", data="x" * 100)]
    with pytest.raises(JobDataError, match=r"^jobs\[1\]: job data is 102 bytes"):
        checked_batch(jobs, max_data_bytes=50)


def test_an_id_given_twice_is_refused_naming_the_second() -> None:
    jobs = [Job(id="a", queue_name="q"), Job(id="b", queue_name="q"), Job(id="a", queue_name="q")]
    with pytest.raises(DuplicateJobError, match=r"^jobs\[2\]: id 'a' is also jobs\[0\]'s"):
        checked_batch(jobs)


def test_something_that_is_not_a_job_is_refused_naming_its_index() -> None:
    with pytest.raises(InvalidJobError, match=r"^jobs\[1\]: expected a Job, got dict"):
        checked_batch([Job(queue_name="q"), {"queueName": "q"}])  # type: ignore[list-item]


def test_a_job_the_iterable_fails_to_build_is_named_by_its_index() -> None:
    def jobs() -> Iterator[Job]:
        yield Job(queue_name="q")
        yield Job(queue_name="q", retries=-1)

    with pytest.raises(InvalidJobError, match=r"^jobs\[1\]: invalid job: retries is -1"):
        checked_batch(jobs())


def test_the_default_add_many_adds_nothing_when_one_job_is_bad() -> None:
    strategy = RecordingStrategy()
    jobs = [Job(queue_name="q", data=n) for n in range(3)]
    jobs[1].retries = -5
    with pytest.raises(InvalidJobError, match=r"^jobs\[1\]: "):
        strategy.add_many(jobs)
    assert strategy.added == []
    added = strategy.add_many(Job(queue_name="q", data=n) for n in range(3))
    assert [job.data for job in added] == [0, 1, 2]


def test_service_add_many_prefixes_the_queue_and_sets_retries() -> None:
    strategy = RecordingStrategy()
    queue = JobQueueService(strategy, prefix="p-").create_queue("mail", lambda job: None)
    jobs = queue.add_many(["a", "b"], retries=3)
    assert [(job.queue_name, job.data, job.retries) for job in jobs] == [
        ("p-mail", "a", 3),
        ("p-mail", "b", 3),
    ]
    assert [job.id for job in jobs] == [job.id for job in strategy.added]


def test_service_add_many_with_bad_data_adds_nothing_and_names_the_index() -> None:
    strategy = RecordingStrategy()
    queue = JobQueueService(strategy).create_queue("mail", lambda job: None)
    with pytest.raises(JobDataError, match=r"^jobs\[2\]: "):
        queue.add_many(["a", "b", object()])
    assert strategy.added == []


class Transaction:
    """Anything with ``on_commit(callback)``: runs the callbacks when told to commit."""

    def __init__(self) -> None:
        self.callbacks: list[Callable[[], object]] = []

    def on_commit(self, callback: Callable[[], object]) -> None:
        self.callbacks.append(callback)

    def commit(self) -> None:
        for callback in self.callbacks:
            callback()


def test_service_add_many_in_a_transaction_publishes_the_given_ids_on_commit() -> None:
    strategy = RecordingStrategy()
    queue = JobQueueService(strategy).create_queue("mail", lambda job: None)
    transaction = Transaction()
    jobs = queue.add_many(["a", "b"], transaction=transaction)
    assert all(job.id for job in jobs) and strategy.added == []
    transaction.commit()
    assert [job.id for job in strategy.added] == [job.id for job in jobs]


def test_service_add_many_leaves_the_jobs_a_buffer_collects_in_the_buffer() -> None:
    strategy = RecordingStrategy()
    service = JobQueueService(strategy)
    service.add_buffer(JoiningBuffer("joining", "mail"))
    mail = service.create_queue("mail", lambda job: None)
    jobs = mail.add_many(["a", "b"])
    assert [job.id for job in jobs] == [BUFFERED_JOB_ID, BUFFERED_JOB_ID]
    assert strategy.added == []
    assert service.buffer_size() == {"joining": 2}


def test_add_many_on_an_unreachable_broker_raises_naming_the_first_job_and_stores_nothing(
    tmp_path: Path,
) -> None:
    app = Celery("add-many-unreachable", broker=f"redis://127.0.0.1:{free_port()}/0")
    strategy = CeleryJobQueueStrategy(app, store=f"sqlite:///{tmp_path / 'jobs.sqlite3'}")
    try:
        assert strategy.add_many([]) == []  # nothing to publish: the broker is not asked
        with pytest.raises(BulkPublishError, match=r"^jobs\[0\]: could not publish") as raised:
            strategy.add_many(Job(queue_name="q", data=n) for n in range(3))
        assert raised.value.published == []
        strategy.flush()
        assert strategy.find_many().total_items == 0
    finally:
        strategy.destroy()
