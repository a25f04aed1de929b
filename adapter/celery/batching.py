"""High-throughput queues: a worker hands several job messages to a pool process at once.

For short jobs Celery's cost per message (a request, a round trip to the pool, its result
handling, a result write) outweighs the job. A queue started with ``start(name, process,
batch=N)`` keeps every job's own semantics (its claim, attempts, progress, cancellation,
retries and outcome in the store) but pays Celery's per-task cost once per batch:

- **Consumer** (``Batcher``, the worker's main process): an admitted message of a batch queue
  is held, not made a Celery request. Once ``N`` are held, or ``LINGER_S`` after the first
  while a pool process is free, else when the pool returns a batch of the queue, they go to
  the pool as one call of ``run_batch``. Held messages widen the consumer's
  prefetch by one each (as Celery does for a message with an ETA), up to ``N`` times the pool
  size plus one batch, so a batch can fill while the pool runs the last one.
- **Pool** (``BatchRunner``): each job is claimed, run and recorded by the lifecycle as the
  task runs one (``adapter.celery.task``); the runner returns what becomes of each message.
- **Acknowledgement**, back in the consumer, per message, only after the pool has returned:
  the job settled (or was settled elsewhere, or its retry is published) is acknowledged; one
  whose outcome could not be recorded, or whose queue is no longer run here, is requeued; an
  invalid one is dead-lettered as the admission does. A worker killed mid-batch acknowledges
  nothing of it: every message is delivered again, and a job whose outcome was recorded is
  not claimed again (the store's settled guard), so it is acknowledged without running.

What a batch queue does not do: write Celery results (``AsyncResult`` and Flower do not see
its jobs; the store has every outcome), Celery's task events and signals, time limits, and
the graceful stop's deadline (``adapter.celery.worker`` sees Celery requests only: a warm stop
waits for the pool's batches). Each job still makes its own claim and outcome write.
"""

from __future__ import annotations

import json
import logging
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from adapter.celery.admission import refusal
from adapter.celery.envelope import TASK_NAME, job_of
from adapter.celery.gate import MustWait
from adapter.celery.publish import JobPublisher
from adapter.celery.registry import ProcessRegistry
from adapter.celery.task import STORE_RETRY_DELAY_S
from adapter.errors import ConfigurationError, JobQueueError, StoreError, WrongQueueError
from adapter.job import Job
from adapter.lifecycle import Lifecycle, OutcomeKind

logger = logging.getLogger(__name__)

#: Seconds a held message waits for its batch to fill before the batch goes as it is.
LINGER_S = 0.005
#: The largest batch a queue may ask for.
MAX_BATCH = 1000

#: What becomes of each message of a batch (a dead letter is ``(DEAD, reason)``).
ACK, REQUEUE, DEAD = "ack", "requeue", "dead"
Disposition = tuple[str, str]
#: One message as the pool gets it: task id, body (JSON, as received), routing key it came through.
Item = tuple[str, bytes | str, str]

#: The runner of each strategy in this process, by key: a pool child finds its own here.
_RUNNERS: dict[str, BatchRunner] = {}


def check_batch(queue_name: str, batch: object) -> int:
    """Return ``batch`` as a batch size (1 means none), or raise ConfigurationError."""
    if isinstance(batch, bool) or not isinstance(batch, int) or not 1 <= batch <= MAX_BATCH:
        raise ConfigurationError(
            f"queue {queue_name!r}: batch must be a whole number from 1 to {MAX_BATCH}, "
            f"got {batch!r}"
        )
    return batch


class BatchRunner:
    """Runs a batch of one queue's jobs in a pool process; says what to do with each message."""

    def __init__(self, app: Any, registry: ProcessRegistry, lifecycle: Lifecycle) -> None:
        self._app = app
        self._registry = registry
        self._lifecycle = lifecycle
        self.key = uuid.uuid4().hex
        _RUNNERS[self.key] = self

    def close(self) -> None:
        """Forget this runner (the strategy is destroyed)."""
        _RUNNERS.pop(self.key, None)

    def run(self, queue_name: str, token: str, items: list[Item]) -> list[Disposition]:
        """Run each job of ``items`` in turn; one disposition per item, in order."""
        process = self._registry.resolve(queue_name, token)
        if process is None:
            return [(REQUEUE, "")] * len(items)
        return [self._run_one(process, item) for item in items]

    def _run_one(self, process: Callable[..., Any], item: Item) -> Disposition:
        task_id, body, routing_key = item
        try:
            job = job_of(json.loads(body)[0][0], task_id)
        except (JobQueueError, ValueError, TypeError, IndexError, KeyError) as err:
            return (DEAD, str(err))
        reason = refusal(job, {"routing_key": routing_key})
        if reason is not None:
            return (DEAD, reason)
        try:
            try:
                claimed = self._lifecycle.claim(job)
            except MustWait as waiting:  # a paused or limited queue: offered again after its wait
                self._publish(job, waiting.admission.wait_s)
                return (ACK, "")
            except StoreError as err:  # nothing ran: offered again later, as the task does
                logger.warning(
                    "job %s: %s; offering it again in %ss", job.id, err, STORE_RETRY_DELAY_S
                )
                self._publish(job, STORE_RETRY_DELAY_S)
                return (ACK, "")
            if claimed is None:
                return (ACK, "")  # settled, or running elsewhere: this delivery is not run
            outcome = self._lifecycle.attempt(claimed, process)
            if outcome.kind == OutcomeKind.RETRY and outcome.job is not None:
                self._publish(outcome.job, outcome.retry_in_s)
        except WrongQueueError as err:
            return (DEAD, str(err))
        except JobQueueError as err:  # the outcome unrecorded, or no retry sent: deliver it again
            logger.error("job %s: %s; handing it back", job.id, err)
            return (REQUEUE, "")
        return (ACK, "")

    def _publish(self, job: Job, countdown: float) -> None:
        JobPublisher(self._app, self._app.tasks[TASK_NAME]).publish(job, countdown=countdown)


def run_batch(key: str, queue_name: str, token: str, items: list[Item]) -> list[Disposition]:
    """The pool's entry point (module level: the pool imports it by name)."""
    runner = _RUNNERS.get(key)
    if runner is None:  # a child started without this strategy: another worker may run them
        return [(REQUEUE, "")] * len(items)
    try:
        return runner.run(queue_name, token, items)
    except Exception:  # never lose the batch: every message is delivered again
        logger.exception("batch of %d jobs on %r failed; handing it back", len(items), queue_name)
        return [(REQUEUE, "")] * len(items)


@dataclass
class _Held:
    """Messages of one queue waiting for their batch, whether a flush is scheduled, and how
    many of its batches the pool has not returned yet."""

    token: str = ""
    messages: list[Any] = field(default_factory=list)
    timer: Any = None
    in_pool: int = 0


class Batcher:
    """In the worker's consumer: holds admitted messages of batch queues and sends batches."""

    def __init__(self, runner: BatchRunner, dead_letter: Callable[[Any, str, Any], None]) -> None:
        self._runner = runner
        self._dead_letter = dead_letter
        self._sizes: dict[str, int] = {}
        self._held: dict[str, _Held] = {}
        self._slotted: set[int] = set()  # messages (by id) given a prefetch slot of their own
        # Re-entrant: a solo pool runs a batch inside ``apply_async``, and settles it there.
        # A threads pool settles batches from its threads while the consumer holds more.
        self._lock = threading.RLock()

    def set_size(self, queue_name: str, batch: int) -> None:
        """Run ``queue_name`` in batches of ``batch`` (1: one Celery task per message)."""
        with self._lock:
            if batch > 1:
                self._sizes[queue_name] = batch
            else:
                self._sizes.pop(queue_name, None)

    def batched(self) -> bool:
        """True when some queue runs in batches."""
        return bool(self._sizes)

    def size_of(self, queue_name: str) -> int:
        """The batch size of ``queue_name``; 1 when it is no batch queue."""
        return self._sizes.get(queue_name, 1)

    def hold(self, message: Any, queue_name: str, token: str, consumer: Any) -> None:
        """Hold an admitted message of a batch queue; send its batch when full."""
        with self._lock:
            self._hold(message, queue_name, token, consumer)

    def _hold(self, message: Any, queue_name: str, token: str, consumer: Any) -> None:
        size = self._sizes.get(queue_name, 1)
        held = self._held.setdefault(queue_name, _Held())
        held.token = token
        held.messages.append(message)
        if len(self._slotted) < size * (_pool_size(consumer) + 1):
            consumer.qos.increment_eventually()
            self._slotted.add(id(message))
        if len(held.messages) >= size:
            self._send(queue_name, consumer)
        elif held.timer is None and held.in_pool < _pool_size(consumer):
            # A pool process is free: wait a moment for more. Else the batch goes, as it is
            # then, when the pool returns one (``_returned``).
            held.timer = consumer.timer.call_after(
                LINGER_S, self._flush, (queue_name, consumer), priority=0
            )

    def _flush(self, queue_name: str, consumer: Any) -> None:
        with self._lock:
            self._send(queue_name, consumer)

    def _send(self, queue_name: str, consumer: Any) -> None:
        held = self._held.get(queue_name)
        if held is None:
            return
        if held.timer is not None:
            held.timer.cancel()
            held.timer = None
        messages, held.messages = held.messages, []
        if not messages:
            return
        items = [
            (str(m.headers.get("id")), m.body, str(m.delivery_info.get("routing_key")))
            for m in messages
        ]

        def done(dispositions: list[Disposition]) -> None:
            with self._lock:
                self._settle(messages, dispositions, consumer)
                self._returned(queue_name, consumer)

        def failed(*_: Any) -> None:  # the pool process was lost: deliver them all again
            done([(REQUEUE, "")] * len(messages))

        held.in_pool += 1
        logger.debug("batch of %d jobs of %r to the pool", len(items), queue_name)
        consumer.pool.apply_async(
            run_batch,
            args=(self._runner.key, queue_name, held.token, items),
            callback=done,
            error_callback=failed,
        )

    def _returned(self, queue_name: str, consumer: Any) -> None:
        """A batch of ``queue_name`` came back from the pool: send what was held meanwhile."""
        held = self._held[queue_name]
        held.in_pool -= 1
        if held.messages and held.timer is None:
            self._send(queue_name, consumer)

    def _settle(self, messages: list[Any], dispositions: list[Disposition], consumer: Any) -> None:
        errors = consumer.connection_errors
        settled = list(zip(messages, dispositions, strict=True))
        _ack_all([message for message, (what, _) in settled if what == ACK], errors)
        for message, (what, reason) in settled:
            if what == DEAD:
                self._dead_letter(message, reason, consumer)
            elif what == REQUEUE:
                message.reject_log_error(logger, errors, requeue=True)
            if id(message) in self._slotted:
                self._slotted.discard(id(message))
                consumer.qos.decrement_eventually()


def _ack_all(messages: list[Any], errors: Any) -> None:
    """Acknowledge ``messages``: in one round trip where the transport can (Redis), else each."""
    channel = messages[0].channel if messages else None
    ack_many = getattr(getattr(channel, "qos", None), "ack_many", None)
    if ack_many is None or any(m.channel is not channel or m.acknowledged for m in messages):
        for message in messages:
            message.ack_log_error(logger, errors)
        return
    try:
        ack_many([message.delivery_tag for message in messages])
    except errors as err:  # left unacknowledged: delivered again, and dropped at claim
        logger.error("could not acknowledge a batch of %d messages: %r", len(messages), err)
        return
    for message in messages:
        message._state = "ACK"  # as kombu's Message.ack records it


def _pool_size(consumer: Any) -> int:
    return int(getattr(consumer.pool, "num_processes", None) or 1)
