"""Poison messages: a message on a job queue that is not a job never runs, and is kept.

What counts as poison: any content type but JSON (pickle is never deserialized), a body that
is not JSON, JSON that is not ``[[job], {}, {...}]`` with a valid job, a task name other than
``adapter.run_job``, a message without Celery's task header (the format and its checks are
``adapter.celery.envelope``). A worker checks each message of a job queue (``jobs.*``) as it
arrives, in its consumer, before any pool sees it, all but the job itself: that one is
validated where it runs, and dead-lettered from there the same way
(``DeadLetterRecorder.take_request``), as a full check in the consumer would slow every job:

- the check runs in the task's Celery strategy (``adapter.celery.admission``, which also
  routes and hands back job messages) for messages named ``adapter.run_job``, and in the
  consumer's hooks for unknown tasks, unknown formats and
  undecodable messages (``install_hooks``), which Celery would otherwise log and drop;
- a poison message becomes a ``DeadLetter`` in the job store (``jobqueue dead-letters``),
  goes as it arrived, plus a reason header, to the ``adapter.dead-letter`` queue on RabbitMQ
  (setting ``adapter_dead_letter_queue``),
  and is rejected without requeue. The worker goes on consuming.

Messages of other queues are left to Celery's own handling: this worker may serve other apps.
"""

from __future__ import annotations

import logging
from typing import Any

from kombu.entity import Queue

from adapter.celery.envelope import (
    CONTENT_TYPE,
    DEAD_LETTER_REASON_HEADER,
    TASK_NAME,
    dead_letter,
    message_headers,
    request_body,
    request_headers,
    routed_queue_name,
)
from adapter.dead_letter import DeadLetter
from adapter.errors import JobQueueError
from adapter.settings import AdapterSettings
from adapter.store.base import JobStore

logger = logging.getLogger(__name__)


def on_job_queue(message: Any) -> bool:
    """True when ``message`` came through one of the adapter's job queues."""
    return routed_queue_name(message.delivery_info) is not None


class DeadLetterRecorder:
    """Records, keeps and rejects poison messages."""

    def __init__(self, store: JobStore) -> None:
        self._store = store

    def take(self, message: Any, reason: str, consumer: Any) -> None:
        """Dead-letter ``message`` (in a consumer) for ``reason``: record, keep, reject it."""
        headers = message_headers(message)
        letter = dead_letter(
            reason,
            delivery_info=message.delivery_info,
            headers=headers,
            content_type=message.content_type,
            body=message.body,
        )
        self._file(consumer.app, letter, message.body, message.content_encoding, headers)
        message.reject_log_error(logger, consumer.connection_errors, requeue=False)

    def take_request(self, app: Any, request: Any, body: Any, reason: str) -> None:
        """Dead-letter the task being run (in a pool) whose job ``body`` is invalid.

        Record and keep it; the caller then rejects the message.
        """
        headers = request_headers(request)
        text = request_body(body)
        letter = dead_letter(
            reason,
            delivery_info=request.delivery_info,
            headers=headers,
            content_type=CONTENT_TYPE,
            body=text,
        )
        self._file(app, letter, text, "utf-8", headers)

    def _file(
        self, app: Any, letter: DeadLetter, body: Any, encoding: Any, headers: dict[str, Any]
    ) -> None:
        logger.error(
            "dead letter on %s (task id %s): %s", letter.queue, letter.task_id, letter.reason
        )
        try:
            self._store.record_dead_letter(letter)
        except JobQueueError as err:
            logger.error("could not record the dead letter: %s; body: %.500s", err, letter.body)
        self._keep_on_rabbitmq(app, letter, body, encoding, headers)

    @staticmethod
    def _keep_on_rabbitmq(
        app: Any, letter: DeadLetter, body: Any, encoding: Any, headers: dict[str, Any]
    ) -> None:
        queue = AdapterSettings.from_conf(app.conf).dead_letter_queue
        try:
            with app.producer_pool.acquire(block=True) as producer:
                if producer.connection.transport.driver_type != "amqp":
                    return
                producer.publish(
                    body,
                    exchange="",
                    routing_key=queue,
                    content_type=letter.content_type,
                    content_encoding=encoding,
                    headers={**headers, DEAD_LETTER_REASON_HEADER: letter.reason},
                    declare=[_durable_queue(queue)],
                    delivery_mode=2,
                    retry=True,
                )
        except Exception as err:  # the broker's errors vary; the store still has the letter
            logger.error("could not keep the dead letter on %s: %s", queue, err)


def install_hooks(consumer: Any, recorder: DeadLetterRecorder) -> None:
    """Dead-letter, instead of dropping, job-queue messages that name no known task."""
    unknown_task = consumer.on_unknown_task
    unknown_message = consumer.on_unknown_message
    invalid_task = consumer.on_invalid_task
    decode_error = consumer.on_decode_error

    def on_unknown_task(body: Any, message: Any, exc: Any) -> Any:
        if not on_job_queue(message):
            return unknown_task(body, message, exc)
        name = (message.headers or {}).get("task")
        return recorder.take(
            message, f"unknown task {name!r}: job queues carry {TASK_NAME} only", consumer
        )

    def on_unknown_message(body: Any, message: Any) -> Any:
        if not on_job_queue(message):
            return unknown_message(body, message)
        return recorder.take(message, "not a Celery task message (no task header)", consumer)

    def on_invalid_task(body: Any, message: Any, exc: Any) -> Any:
        if not on_job_queue(message):
            return invalid_task(body, message, exc)
        return recorder.take(message, f"invalid task message: {exc}", consumer)

    def on_decode_error(message: Any, exc: Any) -> Any:
        if not on_job_queue(message):
            return decode_error(message, exc)
        return recorder.take(message, f"the message could not be decoded: {exc}", consumer)

    consumer.on_unknown_task = on_unknown_task
    consumer.on_unknown_message = on_unknown_message
    consumer.on_invalid_task = on_invalid_task
    consumer.on_decode_error = on_decode_error


def _durable_queue(name: str) -> Queue:
    return Queue(name, durable=True, auto_delete=False)  # type: ignore[no-untyped-call]
