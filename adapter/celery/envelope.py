"""The job message: the one place that builds it and reads it, and its documented format.

Every job travels as one Celery task message, protocol 2, JSON. Another producer (a Node
service, a shell script) that sends exactly this gets its job run like one ``add`` published:

- **Task**: header ``task`` is ``adapter.run_job`` (``TASK_NAME``), header ``id`` is the job's
  id (``task_id == job.id``). The name is fixed here and never derived from a module path.
- **Queue**: the message is published with routing key ``jobs.<queue name>``, the celery
  queue of the job's queue name (``adapter.celery.routing.celery_queue``); the adapter sends it
  through the default exchange, and declares the queue bound to a direct exchange of the same
  name. Header ``adapter_queue`` (``QUEUE_HEADER``) repeats the queue name; a worker
  dead-letters a message whose header names another queue than the job queue it came through.
  The job's ``queueName`` in the body is the one it runs on.
- **Content**: ``content-type`` ``application/json`` (``CONTENT_TYPE``; anything else is refused
  unread, pickle above all), ``content-encoding`` ``utf-8``.
- **Body**: ``[[job], {}, embed]``: one positional argument, the job as Vendure's camelCase JSON
  object (``Job.to_wire``: ``id``, ``queueName``, ``data``, ``state``, ``progress``, ``result``,
  ``error``, ``retries``, ``attempts``, ``createdAt``, ``startedAt``, ``settledAt``), no keyword
  arguments, and Celery's embed object (``{"callbacks": null, "errbacks": null, "chain": null,
  "chord": null}``; ``{}`` is accepted). ``queueName`` is required; a job without ``id`` takes
  the task id (``job_of``), and one with another id than its task id is refused; the other
  fields default as in ``Job`` (``state`` ``PENDING``, ``attempts`` 0...).
- **Other headers**: Celery's own (``lang``, ``root_id``, ``parent_id``, ``eta`` for a retry
  waiting its countdown, ``retries``, ``timelimit``, ``origin``...) as ``apply_async`` sets
  them. The adapter sets ``argsrepr`` to ``[job <id> on '<queue name>']`` (headers and
  properties; ``args_repr``), so Flower and ``celery events`` never show the job data, and
  ``kwargsrepr`` to ``{}``; a worker reads neither.
- **Timeout** (optional): header ``adapter_timeout`` (``TIMEOUT_HEADER``), seconds > 0, the
  job's own time limit per attempt (``add(job, timeout=...)``; ``adapter.deadlines``); kept by
  its retries. A bad value is ignored (the queue's timeout applies).
- **Retry**: a failed attempt with retries left is sent again by Celery's ``Task.retry``, same
  task id, with the job as it is after that attempt as the argument (``job_args``) and the
  same ``argsrepr``/``kwargsrepr`` as the first message (``args_repr``).

The same contract, as a JSON Schema, ships in the package (``adapter.schema``).

A worker refuses a message on a job queue whose envelope is malformed (``malformed_reason``)
or whose job is invalid (``job_of``): it is kept as a dead letter (``dead_letter``; on
RabbitMQ the message itself, with header ``x-adapter-dead-letter-reason``), never run. The
worker adds ``adapter_process`` (``PROCESS_HEADER``) to a request it hands its pool; a producer
never sets it, nor ``adapter_timeout_s`` (``TIMEOUT_FIELD``), the timeout it resolved.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from adapter.celery.routing import queue_name_of
from adapter.dead_letter import DeadLetter, body_text, plain_headers
from adapter.errors import InvalidJobMessageError
from adapter.job import Job

#: The one Celery task that runs every job.
TASK_NAME = "adapter.run_job"
#: Message header naming the job's queue name, set at ``add``.
QUEUE_HEADER = "adapter_queue"
#: Request field a worker parent sets to tell the pool which process runs the job.
PROCESS_HEADER = "adapter_process"
#: Optional message header: the job's own timeout per attempt, in seconds.
TIMEOUT_HEADER = "adapter_timeout"
#: Request field a worker parent sets to the attempt's resolved timeout (None: none).
TIMEOUT_FIELD = "adapter_timeout_s"
#: Header added to a dead-lettered message kept on RabbitMQ: why it was not run.
DEAD_LETTER_REASON_HEADER = "x-adapter-dead-letter-reason"
#: The only content type a job message may have.
CONTENT_TYPE = "application/json"
#: What Flower and ``celery events`` show as the keyword arguments: there are none.
KWARGS_REPR = "{}"

#: What reading a message kombu stored in Redis raises when it is not what kombu writes.
_UNREADABLE = (ValueError, TypeError, KeyError, IndexError, AttributeError)


def job_args(job: Job) -> list[Any]:
    """Return the positional arguments of the message that runs ``job``: the job alone."""
    return [job.to_wire()]


def args_repr(job: Job) -> dict[str, str]:
    """Return what Flower and ``celery events`` show as a job message's arguments.

    The same on every attempt, the first ``add`` and each retry: the queue name and job id,
    never the data (a repr of the whole job per message would also cost more than the rest).
    """
    return {"argsrepr": f"[job {job.id} on {job.queue_name!r}]", "kwargsrepr": KWARGS_REPR}


def build(
    amqp: Any, job: Job, args: list[Any], *, timeout: float | None = None, **options: Any
) -> Any:
    """Return Celery's task message (``app.amqp.create_task_message``) that runs ``job``.

    ``args`` come from ``job_args`` (the router has seen them); ``options`` are Celery's
    ``create_task_message`` options. The message carries the queue header (and the job's
    own ``timeout``, if given) and, as ``apply_async`` sends them, ``argsrepr``/``kwargsrepr``
    among its properties too.
    """
    reprs = args_repr(job)
    message = amqp.create_task_message(job.id, TASK_NAME, args, {}, **reprs, **options)
    message.headers[QUEUE_HEADER] = job.queue_name
    timeout = job.timeout if timeout is None else timeout
    if timeout is not None:  # for the worker's main process, which reads no body
        message.headers[TIMEOUT_HEADER] = timeout
    message.properties.update(reprs)
    return message


class MessageTemplate:
    """The message ``build`` made for one job, recast for other jobs of its celery queue.

    ``add_many`` builds Celery's message once per celery queue and call: between two jobs
    added together on one queue, only these parts differ, and ``message`` replaces them: the
    task id (header ``id``, ``root_id`` when no running task added them, property
    ``correlation_id``), ``argsrepr``, the ``adapter_timeout`` header, and the body's job. The
    rest (``origin``, ``reply_to``, ``timelimit``, ``ignore_result``, the parent and root of a
    job added by a task...) is the same for every job; ``build`` with no countdown and no
    ``expires`` (Celery dates both at build time) is what makes a template (a unit test
    compares ``message`` with ``build`` field by field).
    """

    def __init__(self, message: Any, job: Job) -> None:
        """``message``: what ``build`` returned for ``job`` (no countdown, no expires), taken
        as it is now: sending it later (signals, trace context) does not change the template."""
        self._type = type(message)
        self._headers = _copied(message.headers)
        self._properties = _copied(message.properties)
        self._kwargs, self._embed = message.body[1], _copied(message.body[2])
        self._sent_event = message.sent_event
        self._own_root = message.headers.get("root_id") == job.id

    def message(self, job: Job) -> Any:
        """Return the message ``build`` would make for ``job``."""
        headers = _copied(self._headers)
        properties = _copied(self._properties)
        reprs = args_repr(job)
        headers.update(reprs, id=job.id)
        if self._own_root:
            headers["root_id"] = job.id
        headers.pop(TIMEOUT_HEADER, None)
        if job.timeout is not None:
            headers[TIMEOUT_HEADER] = job.timeout
        properties.update(reprs, correlation_id=job.id)
        body = (job_args(job), dict(self._kwargs), _copied(self._embed))
        return self._type(headers, properties, body, self._sent_event)


def _copied(fields: Mapping[str, Any]) -> dict[str, Any]:
    """Return a copy of ``fields`` whose dict and list values are copies too (one level):
    what one message's signal receivers change stays in that message."""
    return {
        name: value.copy() if isinstance(value, dict | list) else value
        for name, value in fields.items()
    }


def retry_headers(request: Any) -> dict[str, Any]:
    """Return the ``headers`` option of a retry of ``request``: the job's own timeout, kept."""
    timeout = getattr(request, TIMEOUT_HEADER, None)
    return {} if timeout is None else {"headers": {TIMEOUT_HEADER: timeout}}


def job_of(wire_job: Any, task_id: str) -> Job:
    """Return the job a message carries; without an id it takes the message's task id.

    Raises InvalidJobMessageError for an invalid job, or one whose id is not its task id
    (``find_one`` and Celery's controls know a job by its task id).
    """
    if isinstance(wire_job, dict) and not wire_job.get("id"):  # Vendure: a falsy id is none
        wire_job = {**wire_job, "id": task_id}
    job = Job.from_wire(wire_job)
    if job.id != task_id:
        raise InvalidJobMessageError(
            f"not a valid job: its id {job.id!r} differs from its task id {task_id!r}"
        )
    return job


def request_body(wire_job: Any) -> str:
    """Return a body text for the job argument of a request whose message is gone."""
    return json.dumps([[wire_job], {}, {}], default=repr)


def malformed_reason(message: Any) -> str | None:
    """Return why a message named ``adapter.run_job`` is not a job message, or None.

    The envelope only, as cheaply as possible (every message passes here, in the worker's
    consumer); the job in it is validated where it runs (``Job.from_wire``).
    """
    if message.content_type != CONTENT_TYPE:
        return f"content type {message.content_type!r} is refused: job messages are JSON only"
    try:
        body = json.loads(message.body)
    except (ValueError, TypeError) as err:
        return f"the body is not JSON: {err}"
    if not (isinstance(body, list) and len(body) == 3 and isinstance(body[0], list)):
        return "the body is not a Celery task body [args, kwargs, embed]"
    if len(body[0]) != 1:
        return f"a job message has one argument, the job; this one has {len(body[0])}"
    if body[1]:
        return f"a job message has no keyword arguments; this one has {body[1]!r:.200}"
    return None


def routed_queue_name(delivery_info: Mapping[str, Any] | None) -> str | None:
    """Return the queue name of the job queue a message came through, or None if none."""
    routing_key = (delivery_info or {}).get("routing_key")
    return queue_name_of(routing_key) if isinstance(routing_key, str) else None


def message_headers(message: Any) -> dict[str, Any]:
    """Return a received message's headers, or no headers when a sender put no dict there."""
    return message.headers if isinstance(message.headers, dict) else {}


def request_headers(request: Any) -> dict[str, Any]:
    """Return the task headers of a request being run: its task name and id."""
    return {"task": request.task, "id": request.id}


def dead_letter(
    reason: str,
    *,
    delivery_info: Mapping[str, Any] | None,
    headers: Mapping[str, Any],
    content_type: str | None,
    body: Any,
) -> DeadLetter:
    """Return the ``DeadLetter`` of a message that is not run, from its parts."""
    return DeadLetter(
        queue=str((delivery_info or {}).get("routing_key") or ""),
        task_name=_text_or_none(headers.get("task")),
        task_id=_text_or_none(headers.get("id")),
        content_type=content_type,
        reason=reason,
        body=body_text(body),
        headers=plain_headers(headers),
    )


def stored_task_id(raw: Any, *, unacked: bool = False) -> str:
    """Return the task id of a message as kombu's Redis transport stores it, or "".

    ``raw`` is an item of a queue's list (the message's JSON payload) or, with ``unacked``,
    a value of kombu's ``unacked`` hash (JSON ``[payload, exchange, routing_key]``).
    """
    try:
        stored = json.loads(raw)
        return str((stored[0] if unacked else stored)["headers"]["id"])
    except _UNREADABLE:
        return ""


def stored_job_due(raw: Any) -> float | None:
    """Return when a value of kombu's Redis ``unacked`` hash is due, if it is a job message.

    The value is JSON ``[payload, exchange, routing_key]``; the due time is the ``eta`` header
    in seconds since the epoch, 0 for a message due at once. None means a message of another
    queue, or one this module does not understand.
    """
    try:
        payload, _exchange, routing_key = json.loads(raw)
        eta = (payload.get("headers") or {}).get("eta")
        due = datetime.fromisoformat(eta).timestamp() if eta else 0.0
    except _UNREADABLE:
        return None
    return due if routed_queue_name({"routing_key": routing_key}) is not None else None


def _text_or_none(value: Any) -> str | None:
    return None if value is None else str(value)
