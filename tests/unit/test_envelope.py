"""The job message: what the envelope builds is what it reads back, and each way it refuses one."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pytest
from celery import Celery

from adapter.celery.envelope import (
    CONTENT_TYPE,
    QUEUE_HEADER,
    TASK_NAME,
    TIMEOUT_HEADER,
    MessageTemplate,
    build,
    dead_letter,
    job_args,
    malformed_reason,
    request_body,
    retry_headers,
    routed_queue_name,
    stored_job_due,
    stored_task_id,
)
from adapter.celery.routing import celery_queue
from adapter.job import Job
from tests.factories import make_job
from tests.support import sent_and_received


@dataclass
class Received:
    """What a consumer reads of a message: the parts the envelope looks at."""

    body: Any = b'[[{"id": "j-1", "queueName": "mail"}], {}, {}]'
    content_type: str | None = CONTENT_TYPE
    headers: dict[str, Any] = field(default_factory=lambda: {"task": TASK_NAME, "id": "j-1"})
    delivery_info: dict[str, Any] | None = field(
        default_factory=lambda: {"routing_key": celery_queue("mail")}
    )


@pytest.fixture
def app() -> Iterator[Celery]:
    """A Celery app on kombu's in-memory broker: messages really serialized, no server."""
    app = Celery("envelope", broker="memory://", set_as_current=False)
    yield app
    app.close()


def test_a_built_message_reads_back_as_the_same_job_on_its_queue(app: Celery) -> None:
    job = make_job(queue_name=f"mail-{uuid.uuid4().hex}", data={"to": "a@example.com"})
    message = sent_and_received(app, job)
    assert malformed_reason(message) is None
    assert message.headers[QUEUE_HEADER] == job.queue_name
    assert routed_queue_name(message.delivery_info) == job.queue_name
    (wire_job,), kwargs, _embed = json.loads(message.body)
    assert Job.from_wire(wire_job) == job and kwargs == {}
    assert (message.headers["task"], message.headers["id"]) == (TASK_NAME, job.id)


def test_a_built_message_shows_the_job_id_but_not_its_data_as_arguments(app: Celery) -> None:
    job = make_job(queue_name=f"mail-{uuid.uuid4().hex}", data={"secret": "s3cret"})
    message = sent_and_received(app, job)
    expected = f"[job {job.id} on {job.queue_name!r}]"
    assert (message.headers["argsrepr"], message.headers["kwargsrepr"]) == (expected, "{}")
    assert message.properties["argsrepr"] == expected
    assert "s3cret" not in message.headers["argsrepr"]


def test_a_well_formed_envelope_has_no_malformed_reason() -> None:
    assert malformed_reason(Received()) is None


@pytest.mark.parametrize(
    ("received", "reason"),
    [
        (Received(content_type="application/x-python-serialize"), "content type 'application/"),
        (Received(content_type=None), "content type None is refused"),
        (Received(body=b'[[{"id": '), "the body is not JSON"),
        (Received(body=None), "the body is not JSON"),
        (Received(body=b'{"args": []}'), "not a Celery task body [args, kwargs, embed]"),
        (Received(body=b"[[], {}]"), "not a Celery task body [args, kwargs, embed]"),
        (Received(body=b'[{"id": "j"}, {}, {}]'), "not a Celery task body [args, kwargs, embed]"),
        (Received(body=b"[[], {}, {}]"), "one argument, the job; this one has 0"),
        (Received(body=b"[[1, 2], {}, {}]"), "one argument, the job; this one has 2"),
        (Received(body=b'[[{}], {"x": 1}, {}]'), "no keyword arguments; this one has {'x': 1}"),
    ],
)
def test_each_malformed_envelope_is_refused_with_its_reason(
    received: Received, reason: str
) -> None:
    found = malformed_reason(received)
    assert found is not None and reason in found


def test_a_job_queue_names_the_queue_a_message_came_through() -> None:
    assert routed_queue_name({"routing_key": celery_queue("video.resize")}) == "video.resize"


@pytest.mark.parametrize(
    "delivery_info",
    [None, {}, {"routing_key": None}, {"routing_key": 7}, {"routing_key": "celery"}],
)
def test_a_message_off_any_job_queue_has_no_queue_name(
    delivery_info: dict[str, Any] | None,
) -> None:
    assert routed_queue_name(delivery_info) is None


def test_a_dead_letter_keeps_the_routing_key_task_headers_and_body() -> None:
    received = Received(body=b"\xff not a job")
    letter = dead_letter(
        "the body is not JSON",
        delivery_info=received.delivery_info,
        headers=received.headers,
        content_type=received.content_type,
        body=received.body,
    )
    assert (letter.queue, letter.task_name, letter.task_id) == ("jobs.mail", TASK_NAME, "j-1")
    assert (letter.reason, letter.body) == ("the body is not JSON", "\\xff not a job")


def test_a_request_body_is_a_job_message_body_around_the_job_argument() -> None:
    assert json.loads(request_body({"id": "j-1"})) == [[{"id": "j-1"}], {}, {}]


def stored(headers: dict[str, Any]) -> dict[str, Any]:
    """Return a message payload as kombu's Redis transport stores it."""
    return {"body": "W10=", "content-type": CONTENT_TYPE, "headers": headers, "properties": {}}


def test_the_task_id_is_read_from_a_queued_and_an_unacknowledged_message() -> None:
    payload = stored({"id": "j-1"})
    assert stored_task_id(json.dumps(payload)) == "j-1"
    assert stored_task_id(json.dumps([payload, "", "jobs.mail"]), unacked=True) == "j-1"
    assert stored_task_id(b"not json") == stored_task_id(json.dumps({"headers": {}})) == ""


def test_an_unacknowledged_job_message_is_due_at_its_eta_or_at_once() -> None:
    eta = datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC)
    later = json.dumps([stored({"id": "j", "eta": eta.isoformat()}), "", "jobs.mail"])
    now = json.dumps([stored({"id": "j"}), "", "jobs.mail"])
    assert (stored_job_due(later), stored_job_due(now)) == (eta.timestamp(), 0.0)


@pytest.mark.parametrize(
    "raw",
    [
        json.dumps([stored({"id": "j"}), "", "celery"]),
        json.dumps([stored({"id": "j", "eta": "soon"}), "", "jobs.mail"]),
        json.dumps([stored({"id": "j"}), ""]),
        json.dumps(["payload", "", "jobs.mail"]),
        b"not json",
    ],
)
def test_another_queues_or_an_unreadable_unacknowledged_message_has_no_due_time(
    raw: Any,
) -> None:
    assert stored_job_due(raw) is None


def test_a_jobs_own_timeout_travels_in_a_header_and_a_retry_keeps_it(app: Celery) -> None:
    job = make_job(queue_name=f"mail-{uuid.uuid4().hex}")
    message = sent_and_received(app, job, timeout=2.5)
    assert message.headers[TIMEOUT_HEADER] == 2.5
    assert TIMEOUT_HEADER not in sent_and_received(app, job).headers
    # The job's stored field: every publisher of the job (retry, reaper, promoter) sends it.
    timed = job.model_copy(update={"timeout": 4.0})
    assert sent_and_received(app, timed).headers[TIMEOUT_HEADER] == 4.0

    @dataclass
    class Request:
        adapter_timeout: float | None = 2.5

    assert retry_headers(Request()) == {"headers": {TIMEOUT_HEADER: 2.5}}
    assert retry_headers(Request(None)) == {}


@pytest.mark.parametrize("parent", [None, ("root-1", "parent-1")])
def test_a_template_recasts_the_message_build_makes_for_each_job(
    parent: tuple[str, str] | None,
) -> None:
    """``add_many`` builds one message per queue and recasts it: field by field what ``build``
    makes for every job (ids, argsrepr, timeout header, body), with or without a running task
    as parent."""
    amqp = Celery("template", set_as_current=False).amqp
    root_id, parent_id = parent or (None, None)
    options: dict[str, Any] = {"reply_to": "reply-1", "root_id": root_id, "parent_id": parent_id}

    def built(job: Job) -> Any:
        return build(amqp, job, job_args(job), **options)

    jobs = [
        Job(queue_name="mail", data={"n": n}, priority=n % 10, timeout=[None, 2.5][n % 2]).as_added(
            str(uuid.uuid4())
        )
        for n in range(4)
    ]
    template = MessageTemplate(built(jobs[0]), jobs[0])
    for job in jobs:
        recast, expected = template.message(job), built(job)
        assert recast.headers == expected.headers
        assert recast.properties == expected.properties
        assert json.dumps(recast.body) == json.dumps(expected.body)
        assert recast.sent_event is expected.sent_event is None


def test_what_sending_a_message_changes_stays_out_of_its_template() -> None:
    """A publish signal's receiver or the trace context may change a message as it is sent:
    the messages recast afterwards are as ``build`` makes them."""
    amqp = Celery("template-sent", set_as_current=False).amqp
    first, second = (Job(queue_name="mail", data=n).as_added(str(uuid.uuid4())) for n in (1, 2))
    message = build(amqp, first, job_args(first), reply_to="reply-1")
    template = MessageTemplate(message, first)
    message.headers["traceparent"] = "00-sent-first"  # what a receiver may do while it goes
    message.headers["stamps"]["mine"] = "stamped"
    message.properties["priority"] = 9
    message.body[2]["chain"] = ["changed"]
    recast, expected = (
        template.message(second),
        build(amqp, second, job_args(second), reply_to="reply-1"),
    )
    assert (recast.headers, recast.properties) == (expected.headers, expected.properties)
    assert json.dumps(recast.body) == json.dumps(expected.body)
