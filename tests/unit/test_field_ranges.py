"""Every bounded job field has one range, refused outside it by Job(...), add and the worker."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from celery import Celery
from pydantic import ValidationError

from adapter import CeleryJobQueueStrategy, Job
from adapter.celery.app import create_app
from adapter.errors import (
    InvalidJobError,
    InvalidJobMessageError,
    InvalidQueueNameError,
    JobQueueError,
)
from adapter.job import (
    FIELD_RANGES,
    MAX_ATTEMPTS,
    MAX_ID_LENGTH,
    MAX_PRIORITY,
    MAX_PROGRESS,
    MAX_QUEUE_NAME_LENGTH,
    MAX_RETRIES,
    MAX_UNIQUE_KEY_LENGTH,
    check_fields,
)
from adapter.settings import filesystem_transport_options
from adapter.store.memory import MemoryJobStore
from tests.bad_jobs import HUGE_QUEUE_NAME, OUT_OF_RANGE_ADDS
from tests.factories import make_job
from tests.support import messages_waiting, unique_queue

OUT_OF_RANGE = [
    pytest.param("retries", 2**64, id="retries-2**64"),
    pytest.param("retries", -1, id="retries-minus-1"),
    pytest.param("retries", MAX_RETRIES + 1, id="retries-above-max"),
    pytest.param("attempts", MAX_ATTEMPTS + 1, id="attempts-above-postgres-integer"),
    pytest.param("attempts", -1, id="attempts-minus-1"),
    pytest.param("progress", -0.5, id="progress-below-0"),
    pytest.param("progress", MAX_PROGRESS + 1, id="progress-above-100"),
    pytest.param("progress", float("nan"), id="progress-nan"),
    pytest.param("id", "x" * (MAX_ID_LENGTH + 1), id="id-too-long"),
    pytest.param("id", "a\x00b", id="id-with-nul"),
    pytest.param("priority", -1, id="priority-minus-1"),
    pytest.param("priority", MAX_PRIORITY + 1, id="priority-above-max"),
]
#: Fields whose wire key is not their name: ``(field, wire key, value)``.
OUT_OF_RANGE_CAMEL = [
    pytest.param("unique_key", "uniqueKey", "k" * (MAX_UNIQUE_KEY_LENGTH + 1), id="key-too-long"),
    pytest.param("unique_key", "uniqueKey", "a\nb", id="key-with-newline"),
    pytest.param("unique_key", "uniqueKey", "", id="key-empty"),
    pytest.param("retried_from", "retriedFrom", "x" * (MAX_ID_LENGTH + 1), id="from-too-long"),
    pytest.param("retried_from", "retriedFrom", "a\x7fb", id="from-with-del"),
]


@pytest.fixture
def strategy() -> Iterator[CeleryJobQueueStrategy]:
    """A strategy on kombu's in-memory broker and the memory store, running no worker."""
    app = Celery(f"ranges-{uuid.uuid4().hex[:8]}")
    app.config_from_object("celeryconfig")
    app.conf.broker_url = "memory://"
    made = CeleryJobQueueStrategy(app, store=MemoryJobStore(), embedded_worker=False)
    yield made
    made.destroy()


def stored_on(strategy: CeleryJobQueueStrategy, queue_name: str) -> int:
    """Return how many jobs of ``queue_name`` the strategy's store holds."""
    return strategy.find_many({"filter": {"queueName": {"eq": queue_name}}}).total_items


@pytest.mark.parametrize(("field", "value"), OUT_OF_RANGE)
def test_job_outside_a_field_range_is_refused_naming_the_field_and_range(
    field: str, value: Any
) -> None:
    with pytest.raises(InvalidJobError) as caught:
        Job(queue_name="q", **{field: value})
    assert str(caught.value).startswith(f"invalid job: {field} is ")
    assert str(caught.value).endswith(f"; it must be {FIELD_RANGES[field]}")
    assert isinstance(caught.value, JobQueueError) and isinstance(caught.value, ValueError)
    assert isinstance(caught.value.__cause__, ValidationError)


def test_job_with_a_10_kb_queue_name_is_refused_with_the_queue_name_error() -> None:
    with pytest.raises(InvalidQueueNameError) as caught:
        Job(queue_name=HUGE_QUEUE_NAME)
    assert str(caught.value) == (
        f"queue name is 10240 characters long; the limit is {MAX_QUEUE_NAME_LENGTH}"
    )


def test_job_at_the_edges_of_every_range_is_accepted() -> None:
    job = Job(
        id="i" * MAX_ID_LENGTH,
        queue_name="q" * MAX_QUEUE_NAME_LENGTH,
        retries=MAX_RETRIES,
        attempts=MAX_ATTEMPTS,
        progress=MAX_PROGRESS,
    )
    assert (job.retries, job.attempts, job.progress) == (MAX_RETRIES, MAX_ATTEMPTS, 100)
    assert Job(queue_name="q", retries=0, attempts=0, progress=0).retries == 0
    edges = Job(
        queue_name="q",
        priority=MAX_PRIORITY,
        unique_key="k" * MAX_UNIQUE_KEY_LENGTH,
        retried_from="i" * MAX_ID_LENGTH,
    )
    assert (edges.priority, len(str(edges.unique_key))) == (MAX_PRIORITY, MAX_UNIQUE_KEY_LENGTH)
    assert Job(queue_name="q", priority=0).priority == 0


@pytest.mark.parametrize(("field", "key", "value"), OUT_OF_RANGE_CAMEL)
def test_a_key_outside_its_range_is_refused_naming_it_in_python_and_on_the_wire(
    field: str, key: str, value: Any
) -> None:
    with pytest.raises(InvalidJobError) as caught:
        Job(queue_name="q", **{field: value})
    assert str(caught.value).startswith(f"invalid job: {field} is ")
    assert str(caught.value).endswith(f"; it must be {FIELD_RANGES[field]}")
    with pytest.raises(InvalidJobMessageError) as refused:
        Job.from_wire(make_job(id="7").to_wire() | {key: value})
    assert str(refused.value).startswith(f"not a valid job: {key} is ")


def test_ranges_fit_a_postgresql_integer_column() -> None:
    assert MAX_RETRIES < MAX_ATTEMPTS <= 2**31 - 1


def test_job_missing_its_queue_name_raises_the_library_error() -> None:
    no_fields: dict[str, Any] = {}
    with pytest.raises(InvalidJobError, match=r"^invalid job: queue_name: Field required$"):
        Job(**no_fields)


def test_model_validate_keeps_raising_pydantic_validation_error() -> None:
    with pytest.raises(ValidationError) as caught:
        Job.model_validate({"queueName": "q", "retries": 2**64})
    assert caught.value.errors()[0]["loc"] == ("retries",)


@pytest.mark.parametrize(("field", "value"), OUT_OF_RANGE)
def test_worker_refuses_a_message_outside_a_field_range(field: str, value: Any) -> None:
    wire = make_job(id="7").to_wire() | {field: value}  # these fields' wire keys are their names
    with pytest.raises(InvalidJobMessageError) as caught:
        Job.from_wire(wire)
    assert str(caught.value).startswith(f"not a valid job: {field} is ")
    assert str(caught.value).endswith(f"; it must be {FIELD_RANGES[field]}")


def test_worker_refuses_a_message_with_a_10_kb_queue_name() -> None:
    wire = make_job(id="7").to_wire() | {"queueName": HUGE_QUEUE_NAME}
    with pytest.raises(InvalidJobMessageError, match="queue name is 10240 characters long"):
        Job.from_wire(wire)


def test_check_fields_catches_a_value_assigned_after_construction() -> None:
    job = make_job()
    job.retries = 2**64
    with pytest.raises(InvalidJobError, match=r"retries is 18446744073709551616"):
        check_fields(job)


@pytest.mark.parametrize(("fields", "error", "message"), OUT_OF_RANGE_ADDS)
def test_add_refuses_a_field_out_of_range_and_publishes_and_stores_nothing(
    strategy: CeleryJobQueueStrategy,
    fields: dict[str, Any],
    error: type[JobQueueError],
    message: str,
) -> None:
    queue = unique_queue("ranges")
    # model_construct skips validation, as a job changed after it was built would.
    job = Job.model_construct(**({"queue_name": queue} | fields))
    with pytest.raises(error, match=message):
        strategy.add(job)
    with pytest.raises(error, match=message):
        strategy.add(job.model_copy(update={"id": "given-id"}))
    strategy.flush()
    name = str(fields.get("queue_name", queue))
    assert stored_on(strategy, name) == 0
    assert messages_waiting(strategy, queue) == 0


def test_add_within_every_range_publishes_and_stores(strategy: CeleryJobQueueStrategy) -> None:
    queue = unique_queue("ranges")
    job = Job(
        queue_name=queue,
        retries=MAX_RETRIES,
        priority=MAX_PRIORITY,
        unique_key="k" * MAX_UNIQUE_KEY_LENGTH,
        retried_from="i" * MAX_ID_LENGTH,
    )
    added = strategy.add(job)
    stored = strategy.find_one(added.id or "")
    assert stored is not None
    assert (stored.priority, stored.unique_key, stored.retried_from) == (
        job.priority,
        job.unique_key,
        job.retried_from,
    )
    assert messages_waiting(strategy, queue) == 1


@pytest.mark.parametrize(
    "name", ["q" * MAX_QUEUE_NAME_LENGTH, "Aa0_.-z"], ids=["longest", "every-character"]
)
def test_every_valid_queue_name_is_taken_by_the_embedded_broker(name: str, tmp_path: Path) -> None:
    app = create_app(
        f"names-{uuid.uuid4().hex[:8]}",
        broker_url="filesystem://",
        broker_transport_options=filesystem_transport_options(str(tmp_path)),
    )
    made = CeleryJobQueueStrategy(app, store=MemoryJobStore(), embedded_worker=False)
    try:
        made.add(Job(queue_name=name, data=None))
        assert messages_waiting(made, name) == 1
    finally:
        made.destroy()


def test_a_colon_in_a_queue_name_is_refused_as_no_broker_takes_it_everywhere() -> None:
    with pytest.raises(InvalidQueueNameError, match=re.escape("use letters, digits and '_.-'")):
        Job(queue_name="a:b")
