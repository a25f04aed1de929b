"""The job message's JSON Schema: what the adapter sends follows it, and what it refuses the
worker refuses too; its ranges are ``adapter.job``'s.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import jsonschema
import pytest
from celery import Celery

from adapter.celery.envelope import TASK_NAME, job_of, malformed_reason
from adapter.celery.routing import celery_queue
from adapter.errors import InvalidJobMessageError
from adapter.job import (
    MAX_ATTEMPTS,
    MAX_ID_LENGTH,
    MAX_PRIORITY,
    MAX_PROGRESS,
    MAX_QUEUE_NAME_LENGTH,
    MAX_RETRIES,
    MAX_UNIQUE_KEY_LENGTH,
    Job,
    JobState,
)
from adapter.schema import job_message_schema
from tests.factories import make_job
from tests.support import sent_and_received

SCHEMA = job_message_schema()
VALIDATOR = jsonschema.Draft202012Validator(SCHEMA)


@pytest.fixture
def app() -> Iterator[Celery]:
    """A Celery app on kombu's in-memory broker: messages really serialized, no server."""
    app = Celery("schema", broker="memory://", set_as_current=False)
    yield app
    app.close()


def published(app: Celery, job: Job) -> dict[str, Any]:
    """Publish ``job`` as the adapter does and return its message as the schema names its parts."""
    message = sent_and_received(app, job)
    return {
        "routingKey": message.delivery_info["routing_key"],
        "contentType": message.content_type,
        "contentEncoding": message.content_encoding,
        "headers": message.headers,
        "body": json.loads(message.body),
    }


def as_message(job: dict[str, Any], task_id: str = "t-1", **parts: Any) -> dict[str, Any]:
    """Return a message a producer builds by hand around the wire ``job``."""
    return {
        "routingKey": celery_queue(str(job.get("queueName", "mail"))),
        "contentType": "application/json",
        "contentEncoding": "utf-8",
        "headers": {"task": TASK_NAME, "id": task_id},
        "body": [[job], {}, {"callbacks": None, "errbacks": None, "chain": None, "chord": None}],
        **parts,
    }


@pytest.mark.parametrize(
    "job",
    [
        make_job(queue_name="mail", data={"to": "a@example.com"}),
        make_job(queue_name="video.resize-v2", data=None, retries=3),
        make_job(
            queue_name="mail",
            data=[1, "two", {"three": 3.5}],
            state=JobState.RETRYING,
            attempts=2,
            retries=5,
            error="planned failure",
            started_at=datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC),
        ),
        make_job(
            queue_name="mail",
            ready_at=datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC),
            priority=MAX_PRIORITY,
            unique_key="sku-42",
            retried_from="j-1",
        ),
    ],
)
def test_the_messages_the_adapter_publishes_follow_the_schema(app: Celery, job: Job) -> None:
    VALIDATOR.validate(published(app, job))


def test_the_smallest_message_the_schema_allows_is_a_job_with_its_task_id() -> None:
    message = as_message({"queueName": "mail"}, task_id="from-beat-1")
    VALIDATOR.validate(message)
    (wire_job,), _kwargs, _embed = message["body"]
    job = job_of(wire_job, message["headers"]["id"])
    assert (job.id, job.queue_name, job.state, job.retries) == (
        "from-beat-1",
        "mail",
        JobState.PENDING,
        0,
    )


@pytest.mark.parametrize(
    ("job", "refused_as"),
    [
        ({"data": 1}, "queueName: Field required"),
        ({"queueName": "bad name"}, "queue name 'bad name' is malformed"),
        ({"queueName": "m" * (MAX_QUEUE_NAME_LENGTH + 1)}, "characters long; the limit is"),
        ({"queueName": "mail", "id": "x" * (MAX_ID_LENGTH + 1)}, "id is a string of 65"),
        ({"queueName": "mail", "retries": -1}, "retries is -1"),
        ({"queueName": "mail", "retries": MAX_RETRIES + 1}, "retries is 1000000001"),
        ({"queueName": "mail", "attempts": MAX_ATTEMPTS + 1}, "attempts is 2147483648"),
        ({"queueName": "mail", "progress": MAX_PROGRESS + 1}, "progress is 101"),
        ({"queueName": "mail", "state": "SLEEPING"}, "state: Input should be"),
        ({"queueName": "mail", "priority": MAX_PRIORITY + 1}, "priority is 10"),
        ({"queueName": "mail", "uniqueKey": "k\u0000"}, "uniqueKey is 'k"),
        ({"queueName": "mail", "retriedFrom": ""}, "retriedFrom is ''"),
    ],
)
def test_a_job_the_schema_refuses_is_refused_by_the_worker(
    job: dict[str, Any], refused_as: str
) -> None:
    assert not VALIDATOR.is_valid(as_message(job))
    with pytest.raises(InvalidJobMessageError, match=refused_as):
        job_of(job, "t-1")


def test_a_job_whose_id_is_not_its_task_id_is_refused_by_the_worker() -> None:
    with pytest.raises(InvalidJobMessageError, match="'another-id' differs from its task id 't-1'"):
        job_of({"queueName": "mail", "id": "another-id"}, "t-1")


@pytest.mark.parametrize(
    "parts",
    [
        {"headers": {"task": "shop.other", "id": "t-1"}},
        {"headers": {"id": "t-1"}},
        {"contentType": "application/x-python-serialize"},
        {"body": [[{"queueName": "mail"}], {"x": 1}, {}]},
        {"body": [[{"queueName": "mail"}, {"queueName": "mail"}], {}, {}]},
        {"routingKey": "celery"},
    ],
)
def test_an_envelope_the_schema_refuses_breaks_the_contract(parts: dict[str, Any]) -> None:
    assert not VALIDATOR.is_valid(as_message({"queueName": "mail"}, **parts))


def test_a_kwargs_envelope_the_schema_refuses_is_refused_by_the_worker() -> None:
    class Received:
        content_type = "application/json"
        body = json.dumps([[{"queueName": "mail"}], {"x": 1}, {}])

    assert "no keyword arguments" in (malformed_reason(Received()) or "")


def test_the_schema_states_the_ranges_and_names_of_adapter_job() -> None:
    defs, job = SCHEMA["$defs"], SCHEMA["$defs"]["job"]["properties"]
    assert defs["jobId"]["maxLength"] == MAX_ID_LENGTH
    assert defs["queueName"]["maxLength"] == MAX_QUEUE_NAME_LENGTH
    assert (job["retries"]["maximum"], job["attempts"]["maximum"]) == (MAX_RETRIES, MAX_ATTEMPTS)
    assert job["progress"]["maximum"] == MAX_PROGRESS
    assert job["priority"]["maximum"] == MAX_PRIORITY
    assert job["uniqueKey"]["anyOf"][0]["maxLength"] == MAX_UNIQUE_KEY_LENGTH
    assert job["state"]["enum"] == [state.value for state in JobState]
    assert SCHEMA["properties"]["headers"]["properties"]["task"] == {"const": TASK_NAME}
    wire_fields = set(make_job().to_wire())
    assert set(job) == wire_fields
