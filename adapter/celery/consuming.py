"""Consume many job queues on a running Celery consumer without stalling its event loop.

Celery's ``Consumer.add_task_queue`` declares one queue with a round trip per entity (the
exchange, the queue, the binding) and then calls ``consume()``, which walks every queue the
consumer has; all of it in one event-loop callback. A worker with 10,000 started queues
therefore consumed the last of them a minute or two after ``worker_ready``, and delivered
nothing meanwhile. Here the queues are added in batches of ``BATCH_SIZE``, one event-loop
callback per batch (``schedule``), so messages of the queues already consumed are delivered
between batches. Within a batch each queue is declared without waiting for the broker's
answer (``nowait``: AMQP pipelines the declarations, over a few channels at once, then the
``basic_consume`` frames), and ``consume()`` is called once. The queues are the ones
``add_task_queue`` would make (selected in ``app.amqp.queues``, a direct exchange of the
queue's name), so ``celery inspect active_queues``, ``cancel_consumer`` and the consumer's
restart after a lost connection see them as before. A queue the broker refuses to declare
(one that exists with other arguments) does not stop the others: when a side channel is closed
by a refusal, the batch is declared again one queue at a time and the refused one is logged.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

from adapter.celery.priority import queue_options
from adapter.celery.routing import celery_queue

logger = logging.getLogger(__name__)

#: Job queues added to the consumer per event-loop callback.
BATCH_SIZE = 500
#: AMQP channels over which the queues of a batch are declared side by side.
DECLARING_CHANNELS = 4


def consume_queues(
    consumer: Any,
    queue_names: Sequence[str],
    schedule: Callable[[Callable[[], None]], Any],
    still_wanted: Callable[[str], bool],
) -> None:
    """Make ``consumer`` consume ``queue_names``: a batch now, the next ones via ``schedule``.

    ``still_wanted`` is asked again as each batch runs: a queue stopped or deselected in
    between is skipped. The batches stop if the consumer restarts meanwhile (a lost
    connection): its restart applies the queues again.
    """
    _consume_from(consumer, consumer.task_consumer, queue_names, schedule, still_wanted)


def _consume_from(
    consumer: Any,
    task_consumer: Any,
    queue_names: Sequence[str],
    schedule: Callable[[Callable[[], None]], Any],
    still_wanted: Callable[[str], bool],
) -> None:
    if task_consumer is None or consumer.task_consumer is not task_consumer:
        return
    batch, rest = queue_names[:BATCH_SIZE], queue_names[BATCH_SIZE:]
    _consume_batch(consumer, task_consumer, [name for name in batch if still_wanted(name)])
    if rest:
        schedule(lambda: _consume_from(consumer, task_consumer, rest, schedule, still_wanted))


def _consume_batch(consumer: Any, task_consumer: Any, queue_names: Sequence[str]) -> None:
    """Declare the queues of ``queue_names`` not consumed yet, then consume them at once."""
    selected = consumer.app.amqp.queues
    added = []
    for queue_name in queue_names:
        name = celery_queue(queue_name)
        if name in selected:
            queue = selected.select_add(selected[name])
        else:
            options = queue_options(consumer.app.conf, queue_name)  # x-max-priority, if named
            queue = selected.select_add(
                name, exchange=name, exchange_type="direct", routing_key=name, **options
            )
        if not task_consumer.consuming_from(name):
            added.append(queue)
    if not added:
        return
    added = _declare(task_consumer, added)
    auto_declare, task_consumer.auto_declare = task_consumer.auto_declare, False
    try:
        for queue in added:
            task_consumer.add_queue(queue)  # declared above: not again, one by one
    finally:
        task_consumer.auto_declare = auto_declare
    task_consumer.consume()
    logger.info("started consuming from %d job queues", len(added))


def _declare(task_consumer: Any, queues: Sequence[Any]) -> list[Any]:
    """Declare ``queues`` without waiting for each answer; return those the broker has.

    RabbitMQ creates the queues of one channel one after the other (about 3 ms for a new
    durable queue, far less for one that exists), so on AMQP they are declared over
    ``DECLARING_CHANNELS`` side channels at once; closing them waits until the broker has
    them all, before they are consumed on the consumer's own channel. If it refused one,
    the batch is declared again one queue at a time, to consume all the others.
    """
    connection = task_consumer.connection
    if connection.transport.driver_type != "amqp":
        for queue in queues:
            queue(task_consumer.channel).declare(nowait=True)
        return list(queues)
    channels = [connection.channel() for _ in range(DECLARING_CHANNELS)]
    try:
        for index, queue in enumerate(queues):
            queue(channels[index % len(channels)]).declare(nowait=True)
    finally:
        refused = _close_all(channels)
    return list(queues) if not refused else _declare_each(connection, queues)


def _declare_each(connection: Any, queues: Sequence[Any]) -> list[Any]:
    """Declare ``queues`` one by one on a side channel; log each refused; return the rest."""
    accepted = []
    channel = connection.channel()
    for queue in queues:
        try:
            queue(channel).declare()
            accepted.append(queue)
        except connection.channel_errors as err:
            logger.error("job queue %r is not consumed: the broker refused it: %s", queue.name, err)
            channel = connection.channel()  # the refusal closed the channel
    channel.close()
    return accepted


def _close_all(channels: Sequence[Any]) -> bool:
    """Close every channel (each waits for the broker); True if one was closed by a refusal."""
    refused = False
    for channel in channels:
        try:
            channel.close()
        except Exception:  # the broker closed it: it refused a declaration
            refused = True
    return refused
