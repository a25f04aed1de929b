"""Bad input gets a clear error naming the problem; nothing is published, stored or lost.

The write-behind batches here are written by ``flush()`` alone (no thread), so that the bad
job is sure to share a batch with the good ones.
"""

from __future__ import annotations

import logging
from typing import Any

import pytest

from adapter import CeleryJobQueueStrategy, Job, JobDataError, JobState
from adapter.celery.envelope import QUEUE_HEADER, TASK_NAME
from adapter.celery.routing import celery_queue
from adapter.errors import JobQueueError
from tests.bad_jobs import OUT_OF_RANGE_ADDS, BatchOnlyWriteBehind
from tests.support import messages_waiting, wait_settled


class Unserializable:
    """An object with no JSON form."""


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"order": {"lines": [1, {2, 3}]}}, "data.order.lines[1] is a set"),
        ({"blob": b"\x00"}, "data.blob is a bytes"),
        ({"price": float("nan")}, "data.price is nan"),
        ({"thing": Unserializable()}, "data.thing is a Unserializable"),
    ],
)
def test_unserializable_data_is_refused_naming_its_key_path(
    strategy: CeleryJobQueueStrategy, queue: str, data: Any, message: str
) -> None:
    with pytest.raises(JobDataError, match=message.replace("[", r"\[").replace("]", r"\]")):
        strategy.add(Job(queue_name=queue, data=data))
    assert messages_waiting(strategy, queue) == 0
    assert strategy.store.find_many({"filter": {"queueName": {"eq": queue}}}).total_items == 0


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        ("not a job", "a job message must be a JSON object, got str"),
        (None, "a job message has one argument, the job; this one has 0"),
        ({"data": 1}, "queueName: Field required"),
        ({"id": "x", "queueName": "x", "data": 1}, "its id 'x' differs from its task id"),
        ({"id": "x", "queueName": "x", "state": "SLEEPING"}, "state: Input should be"),
    ],
)
def test_malformed_message_is_dead_lettered_with_its_reason_and_the_worker_goes_on(
    strategy: CeleryJobQueueStrategy,
    queue: str,
    run: Any,
    caplog: pytest.LogCaptureFixture,
    payload: Any,
    reason: str,
) -> None:
    seen: list[Any] = []
    strategy.app.send_task(
        TASK_NAME,
        args=[payload] if payload is not None else [],
        queue=celery_queue(queue),
        headers={QUEUE_HEADER: queue},
    )
    valid = strategy.add(Job(queue_name=queue, data="valid"))
    with caplog.at_level(logging.INFO):
        run(queue, lambda job: seen.append(job.data))
        assert wait_settled(strategy, valid).state == JobState.COMPLETED
    assert seen == ["valid"]
    rejections = [r.getMessage() for r in caplog.records if "dead letter on" in r.getMessage()]
    assert len(rejections) == 1 and reason in rejections[0]
    assert messages_waiting(strategy, queue) == 0
    letters = [letter for letter in strategy.dead_letters() if letter.queue == celery_queue(queue)]
    assert [letter.task_name for letter in letters] == [TASK_NAME]
    assert reason in letters[0].reason


def test_job_data_over_the_size_limit_is_refused_and_nothing_is_added(
    strategy: CeleryJobQueueStrategy, queue: str
) -> None:
    limit = strategy.max_data_bytes
    with pytest.raises(JobDataError, match=rf"bytes of JSON; the limit is {limit}"):
        strategy.add(Job(queue_name=queue, data={"blob": "x" * limit}))
    assert messages_waiting(strategy, queue) == 0
    assert strategy.store.find_many({"filter": {"queueName": {"eq": queue}}}).total_items == 0


@pytest.mark.parametrize(("fields", "error", "message"), OUT_OF_RANGE_ADDS)
def test_field_out_of_range_is_refused_and_nothing_is_published_or_stored(
    strategy: CeleryJobQueueStrategy,
    queue: str,
    fields: dict[str, Any],
    error: type[JobQueueError],
    message: str,
) -> None:
    with pytest.raises(error, match=message):
        Job(**({"queue_name": queue} | fields))
    # A job changed after it was built (or built unchecked) is refused by add itself.
    job = Job.model_construct(**({"queue_name": queue} | fields))
    with pytest.raises(error, match=message):
        strategy.add(job)
    with pytest.raises(error, match=message):
        strategy.add(job.model_copy(update={"id": f"{queue}-given"}))
    assert messages_waiting(strategy, queue) == 0
    name = str(fields.get("queue_name", queue))
    assert strategy.store.find_many({"filter": {"queueName": {"eq": name}}}).total_items == 0


@pytest.mark.parametrize(
    "bad_fields",
    [
        pytest.param({"data": {"tags": {1, 2}}}, id="data-no-store-can-encode"),
        pytest.param({"retries": 2**64}, id="retries-2**64"),
    ],
)
def test_good_jobs_of_a_batch_around_a_refused_one_are_readable_at_once(
    strategy: CeleryJobQueueStrategy, queue: str, bad_fields: dict[str, Any]
) -> None:
    store = strategy.store
    good = [Job(id=f"{queue}-{n}", queue_name=queue, data={"n": n}) for n in range(4)]
    bad = Job.model_construct(**({"id": f"{queue}-bad", "queue_name": queue} | bad_fields))
    behind = BatchOnlyWriteBehind(store)
    for job in [*good[:2], bad, *good[2:]]:
        behind.add(job)
    behind.flush()
    assert all(store.get(job.id or "") is not None for job in good)
    letters = [letter for letter in store.dead_letters() if letter.task_id == bad.id]
    kept = store.get(bad.id or "")
    if kept is None:
        assert len(letters) == 1
        assert letters[0].reason.startswith(f"the job store refused added job {bad.id}: ")
    else:  # the Redis store holds a number of any size as text
        assert kept.retries == bad.retries and letters == []
