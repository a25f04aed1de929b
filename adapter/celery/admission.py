"""What a worker does with each ``adapter.run_job`` message before its pool runs it.

Every job message ends one of four ways, none of them a loop:

- **run**: it came through the job queue of its queue name (``jobs.<queueName>``), this
  worker runs that queue, its envelope is sound: the pool gets it (``Admission.strategy``);
- **dead-lettered** with the reason (``adapter.celery.poison.DeadLetterRecorder``): here a
  malformed envelope, an ``adapter_queue`` header naming another queue than the job queue it
  came through, job data over ``adapter_max_data_bytes`` (measured only when the body is that
  long); in the pool (``refusal``) an invalid job, a ``queueName`` other than the job queue it
  came through; at claim an id stored for another queue (``WrongQueueError``);
- **routed to its own queue**: a job message on a celery queue that is no job queue (a
  ``send_task`` without ``queue=`` puts it on ``celery``) is published again, as it came, on
  ``jobs.<queueName>``, then acknowledged; there it waits for a worker of its queue. One that
  names no valid queue is dead-lettered;
- **handed back**: on a job queue this worker consumes but does not run (a queue just stopped,
  ``-Q jobs.x`` or ``control add_consumer jobs.x`` without ``start("x")`` here), it is
  rejected with requeue and the worker stops consuming that celery queue, so it waits in the
  broker for a worker of its queue: only messages already prefetched come back, once each.

Messages of other tasks are left to Celery: this worker may serve the shop's own tasks.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from celery.worker.strategy import default

from adapter.celery.envelope import (
    PROCESS_HEADER,
    QUEUE_HEADER,
    TIMEOUT_FIELD,
    TIMEOUT_HEADER,
    malformed_reason,
    message_headers,
    routed_queue_name,
)
from adapter.celery.poison import DeadLetterRecorder
from adapter.celery.registry import ProcessRegistry
from adapter.celery.routing import celery_queue
from adapter.data import check_data_size
from adapter.deadlines import Timeouts
from adapter.errors import InvalidJobMessageError, JobQueueError
from adapter.job import Job, validate_queue_name

if TYPE_CHECKING:
    from adapter.celery.batching import Batcher

logger = logging.getLogger(__name__)

#: Message properties a rerouted message keeps (the rest belong to the transport).
_KEPT_PROPERTIES = ("correlation_id", "reply_to", "priority")


class Admission:
    """Decides, in the worker's consumer, whether a job message reaches the pool."""

    def __init__(
        self,
        recorder: DeadLetterRecorder,
        registry: ProcessRegistry,
        max_data_bytes: int,
        batcher: Batcher | None = None,
        timeouts: Timeouts | None = None,
    ) -> None:
        """``batcher`` takes the admitted messages of batch queues (``adapter.celery.batching``);
        ``timeouts`` resolves each admitted attempt's timeout (``adapter.deadlines``)."""
        self._recorder = recorder
        self._registry = registry
        self._max_data_bytes = max_data_bytes
        self._batcher = batcher
        self._timeouts = timeouts

    def strategy(self) -> Callable[..., Any]:
        """Return a Celery task ``Strategy`` that admits each message before Celery's own runs."""

        def strategy(task: Any, app: Any, consumer: Any, **options: Any) -> Callable[..., Any]:
            handle = default(task, app, consumer, **options)

            def on_message(message: Any, body: Any, *args: Any, **kwargs: Any) -> Any:
                queue_name = routed_queue_name(message.delivery_info)
                token = self.admit(message, consumer, queue_name)
                if not token:
                    return None
                batcher = self._batcher
                if (
                    batcher is not None
                    and batcher.batched()
                    and queue_name is not None
                    and batcher.size_of(queue_name) > 1
                ):
                    batcher.hold(message, queue_name, token, consumer)
                    return None
                # The request Celery builds copies these headers: the pool learns which
                # process runs the job from the look-up made here, once per message, and
                # the watchdog (this process) the attempt's timeout.
                message.headers[PROCESS_HEADER] = token
                if self._timeouts is not None:
                    own = message.headers.get(TIMEOUT_HEADER)
                    message.headers[TIMEOUT_FIELD] = self._timeouts.resolve(queue_name, own)
                return handle(message, body, *args, **kwargs)

            return on_message

        return strategy

    def admit(self, message: Any, consumer: Any, arrival: str | None) -> str:
        """The process token when ``message`` goes to the pool (``ProcessRegistry.token_for``).

        ``arrival``: the queue name of the job queue it came through (``routed_queue_name``),
        or None. "" when it does not go: dead-lettered, routed or handed back.
        """
        reason = malformed_reason(message) or self._oversize(message)
        if reason is None and arrival is None:
            self._route(message, consumer)
            return ""
        if reason is None:
            header = message_headers(message).get(QUEUE_HEADER)
            if header is not None and header != arrival:
                reason = f"header {QUEUE_HEADER} names queue {header!r}, not {arrival!r}"
        if reason is not None:
            self._recorder.take(message, reason, consumer)
            return ""
        assert arrival is not None
        token = self._registry.token_for(arrival)
        if not token:
            self._hand_back(message, arrival, consumer)
        return token

    def _oversize(self, message: Any) -> str | None:
        """Why the job data is too large, or None; the body length bounds it, cheaply."""
        if len(message.body) <= self._max_data_bytes:
            return None
        try:
            check_data_size(_job_of(message).get("data"), self._max_data_bytes)
        except JobQueueError as err:
            return str(err)
        return None

    def _route(self, message: Any, consumer: Any) -> None:
        """Publish a job message that came through another celery queue on its own."""
        try:
            queue_name = validate_queue_name(_job_of(message).get("queueName"))
        except JobQueueError as err:
            self._recorder.take(message, f"on no job queue, and {err}", consumer)
            return
        target = celery_queue(queue_name)
        came_through = (message.delivery_info or {}).get("routing_key")
        try:
            _republish(consumer.app, message, queue_name)
        except Exception as err:  # the broker's errors vary; never requeue it here (a loop)
            reason = f"could not route it from {came_through!r} to {target!r}: {err}"
            self._recorder.take(message, reason, consumer)
            return
        logger.warning(
            "job %s came through celery queue %r; routed it to %r",
            message_headers(message).get("id"),
            came_through,
            target,
        )
        message.ack()

    def _hand_back(self, message: Any, queue_name: str, consumer: Any) -> None:
        """Requeue a job of a queue not run here, and stop consuming its celery queue."""
        target = celery_queue(queue_name)
        logger.warning(
            "job %s: queue %r is not started in this worker; handing it back and no longer "
            "consuming %r",
            message_headers(message).get("id"),
            queue_name,
            target,
        )
        # Cancelled before the requeue, so the broker cannot deliver it here again. The
        # class's method, not the control hook (adapter.celery.consumer): this is no
        # operator's choice, so a later ``start`` of the queue here consumes it again.
        type(consumer).cancel_task_queue(consumer, target)
        message.reject_log_error(logger, consumer.connection_errors, requeue=True)


def refusal(job: Job, delivery_info: Mapping[str, Any] | None) -> str | None:
    """Why the pool must not run ``job`` that came through ``delivery_info``'s queue, or None."""
    arrival = routed_queue_name(delivery_info)
    if arrival is not None and arrival != job.queue_name:
        return (
            f"job {job.id} of queue {job.queue_name!r} came through {celery_queue(arrival)!r}: "
            "a job runs only from its own queue"
        )
    return None


def _job_of(message: Any) -> dict[str, Any]:
    """Return the job object of a message whose envelope is sound (``malformed_reason``)."""
    job = json.loads(message.body)[0][0]
    if not isinstance(job, dict):
        raise InvalidJobMessageError(f"its job is a JSON {type(job).__name__}, not an object")
    return job


def _republish(app: Any, message: Any, queue_name: str) -> None:
    """Send ``message`` as it came to the job queue of ``queue_name``."""
    queue = app.amqp.queues[celery_queue(queue_name)]
    properties = {k: message.properties[k] for k in _KEPT_PROPERTIES if k in message.properties}
    with app.producer_or_acquire() as producer:
        producer.publish(
            message.body,
            exchange=queue.exchange,
            routing_key=queue.routing_key,
            declare=[queue],
            headers={**message_headers(message), QUEUE_HEADER: queue_name},
            content_type=message.content_type,
            content_encoding=message.content_encoding,
            delivery_mode=2,
            retry=True,
            **properties,
        )
