"""Purging a job queue cancels its waiting jobs, whoever purges it, on every broker.

``celery -A tasks purge -Q jobs.x``, ``jobqueue purge x`` and any ``queue_purge`` through a
connection of the app delete the ready messages of a celery queue. For a job queue
(``jobs.<queue name>``) the adapter then settles, in the store, every job of that queue still
waiting (PENDING or RETRYING, created before the purge ended) as CANCELLED, with the error
"cancelled: the messages of queue 'x' were purged from the broker" (``Lifecycle.purged``).
Without it a purged job would wait for ever on RabbitMQ and be published again by the orphan
recovery of the next worker on Redis (``adapter.celery.orphans`` republishes only PENDING and
RETRYING jobs). A waiting job whose
message the purge cannot reach (held by a worker: prefetched, or a retry waiting for its
countdown) is cancelled too, and its message dropped at claim. Jobs running at the purge run
on. So after a purge each job of the queue is settled or running, and ``jobqueue list --queue
x --state cancelled`` shows the purged ones.

How: the channels of the adapter's transports (``adapter.celery.app``: ``amqp://`` here,
``redis://`` and ``filesystem://`` in their modules) tell the app's connection class after
``queue_purge`` of a job queue; the strategy listens (``listen_for_purges``). A purge made
without the app that binds the strategy (``celery -b URL purge``, a plain kombu connection)
only deletes messages.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from kombu.transport import pyamqp

from adapter.celery.routing import queue_name_of

logger = logging.getLogger(__name__)

#: Told the queue name of each job queue purged through a connection.
PurgeListener = Callable[[str], Any]


class PurgeNotifyingChannel:
    """A channel mixin: ``queue_purge`` of a job queue tells the connection's listener."""

    connection: Any

    def queue_purge(self, queue: str, *args: Any, cancel_jobs: bool = True, **kwargs: Any) -> Any:
        """Purge ``queue`` (kombu's), then, for a job queue, have its waiting jobs cancelled.

        ``cancel_jobs=False`` deletes the messages only (the caller cancels the jobs).
        """
        count = super().queue_purge(queue, *args, **kwargs)  # type: ignore[misc]
        queue_name = queue_name_of(queue)
        client = getattr(self.connection, "client", None)
        listener: PurgeListener | None = getattr(client, "job_queue_purged", None)
        if cancel_jobs and queue_name is not None and listener is not None:
            listener(queue_name)
        return count


class AmqpChannel(PurgeNotifyingChannel, pyamqp.Channel):
    """kombu's ``amqp://`` channel, whose purge of a job queue cancels its waiting jobs."""


class AmqpConnection(pyamqp.Connection):
    """kombu's ``amqp://`` connection with ``AmqpChannel``."""

    Channel = AmqpChannel


class AmqpTransport(pyamqp.Transport):
    """kombu's ``amqp://`` transport with ``AmqpConnection``."""

    Connection = AmqpConnection


class AmqpSSLTransport(pyamqp.SSLTransport):
    """kombu's ``amqps://`` transport with ``AmqpConnection``."""

    Connection = AmqpConnection


def purge_messages(connection: Any, celery_queue_name: str) -> int:
    """Delete the ready messages of a celery queue; return how many (0 if it does not exist).

    The jobs are left alone: the caller cancels them (``Lifecycle.purged``).
    """
    channel = connection.default_channel
    try:
        if isinstance(channel, PurgeNotifyingChannel):
            return int(channel.queue_purge(celery_queue_name, cancel_jobs=False) or 0)
        return int(channel.queue_purge(celery_queue_name) or 0)
    except connection.channel_errors:  # RabbitMQ: no such queue (nothing was ever added)
        return 0
