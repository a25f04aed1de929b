"""kombu's ``redis://`` transport, surviving a Redis server that goes away.

When the broker connection drops, Celery closes the consumer's connection, and closing a
Redis channel first tries to hand its unacknowledged messages back. By then kombu has
detached the channel from its connection, so building a Redis client for that raises
``AttributeError`` (not a connection error): Celery calls it an unrecoverable error and the
whole worker exits instead of reconnecting (seen with kombu 5.7 when the server restarts).
A job that finishes after that acknowledges its message on the closed channel, which fails
the same way. Here the hand-back, acknowledgements and rejections of a detached channel are
skipped: the messages stay in kombu's ``unacked`` hash, and the adapter's reaper puts job
messages back within its heartbeat window (``adapter.celery.orphans``), kombu the rest after
``visibility_timeout``.

kombu rebuilds the channel's fair cycle of queues (a pass over every consumed queue) after
each ``basic_consume`` and ``basic_cancel``, so consuming n queues costs n^2 steps on the
event loop (10,000 started queues: tens of seconds before the last one was consumed). Here
the cycle is rebuilt once, before the next BRPOP that reads it. A queue declared without
waiting for the answer (``nowait``, as the consumer declares many queues) skips kombu's count
of its messages (a Redis round trip nobody reads). A batch queue's batch is acknowledged in
one round trip (``QoS.ack_many``). Each BRPOP turn's message is recorded as unacknowledged,
with up to the prefetch's room more messages of its queue popped and recorded, in one Lua call
(``adapter.celery.redis_delivery``; ``QoS.append`` then skips kombu's own write for them).
On the publish side, ``Channel.push_stored`` puts a batch of a queue's messages (``add_many``)
in one LPUSH per priority step. Everything else is kombu's.

An app uses it for ``redis://`` and ``rediss://`` URLs once
``adapter.celery.app.use_adapter_transports`` has been called on it; importing this module
changes nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from functools import cached_property
from queue import Empty
from typing import Any

from kombu.transport import redis, virtual
from kombu.utils.json import dumps, loads

from adapter.celery.purge import PurgeNotifyingChannel
from adapter.celery.redis_delivery import Taker, text

logger = logging.getLogger(__name__)

#: Most messages one LPUSH of ``Channel.push_stored`` carries (bounds one command's size).
PUSH_CHUNK = 1000


class QoS(redis.QoS):
    """Redis QoS whose hand-back, acknowledgement and rejection tolerate a lost connection.

    A message its channel's BRPOP turn recorded already (``recorded``) is not written again.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[no-untyped-call]
        #: Delivery tags already in ``unacked`` (``adapter.celery.redis_delivery``).
        self.recorded: set[Any] = set()

    def append(self, message: Any, delivery_tag: Any) -> None:
        if delivery_tag in self.recorded:
            virtual.QoS.append(self, message, delivery_tag)  # type: ignore[no-untyped-call]
            return
        super().append(message, delivery_tag)  # type: ignore[no-untyped-call]

    def restore_unacked(self, client: Any = None) -> Any:
        if self._detached():
            logger.warning(
                "broker connection lost: unacknowledged messages stay with Redis until "
                "they are restored (job messages within the heartbeat timeout)"
            )
            return None
        return super().restore_unacked(client)  # type: ignore[no-untyped-call]

    def ack(self, delivery_tag: Any) -> None:
        if self._detached():
            self._forget(delivery_tag, "acknowledged")
            return
        super().ack(delivery_tag)  # type: ignore[no-untyped-call]

    def ack_many(self, delivery_tags: list[Any]) -> None:
        """Acknowledge several messages in one Redis round trip (``adapter.celery.batching``)."""
        if self._detached():
            for delivery_tag in delivery_tags:
                self._forget(delivery_tag, "acknowledged")
            return
        with self.pipe_or_acquire() as pipe:
            for delivery_tag in delivery_tags:
                self._remove_from_indices(delivery_tag, pipe)  # type: ignore[no-untyped-call]
            pipe.execute()
        for delivery_tag in delivery_tags:
            virtual.QoS.ack(self, delivery_tag)  # type: ignore[no-untyped-call]

    def reject(self, delivery_tag: Any, requeue: bool = False) -> None:
        if self._detached():
            self._forget(delivery_tag, "rejected")
            return
        super().reject(delivery_tag, requeue)  # type: ignore[no-untyped-call]

    def _detached(self) -> bool:
        """True once kombu has taken the channel off its (lost) connection."""
        connection = getattr(self.channel, "connection", None)
        return connection is None or getattr(connection, "client", None) is None

    def _forget(self, delivery_tag: Any, outcome: str) -> None:
        """A message of a closed channel: it stays with Redis, to be delivered again.

        As with any broker, a message settled after its channel closed is not settled: its
        job's outcome is already in the store, and the copy delivered again is dropped at
        claim. Raising here instead would stop the whole worker (Celery calls an
        ``AttributeError`` unrecoverable).
        """
        logger.warning(
            "message %s %s after the broker connection was lost: Redis delivers it again",
            delivery_tag,
            outcome,
        )
        virtual.QoS.ack(self, delivery_tag)  # type: ignore[no-untyped-call]


class Channel(PurgeNotifyingChannel, redis.Channel):
    """A Redis channel with ``QoS`` above; a purge of a job queue cancels its waiting jobs.

    Higher message priorities are read first, as on RabbitMQ (kombu reads lower ones first):
    the priority steps are kept highest first, so BRPOP lists the highest step's list first,
    and priority 0 (no priority) stays in the queue's own list, read last.
    """

    QoS = QoS
    _queue_cycle_stale = False
    _steps_highest_first: list[int] = sorted(redis.PRIORITY_STEPS, reverse=True)

    @property
    def priority_steps(self) -> list[int]:
        """kombu's priority steps (``priority_steps`` transport option), highest first."""
        return self._steps_highest_first

    @priority_steps.setter
    def priority_steps(self, steps: list[int]) -> None:
        self._steps_highest_first = sorted(steps, reverse=True)

    def priority(self, n: int) -> int:
        """The step whose list holds priority ``n``: the highest step not above it."""
        steps = self._steps_highest_first
        return next((step for step in steps if step <= n), steps[-1])

    def _update_queue_cycle(self) -> None:
        """Mark the fair cycle stale: it is rebuilt before the next BRPOP, once."""
        self._queue_cycle_stale = True

    def queue_declare(self, queue: Any = None, passive: bool = False, **kwargs: Any) -> Any:
        """Declare ``queue``; with ``nowait``, return None instead of counting its messages."""
        if kwargs.get("nowait") and queue and not passive:
            self._new_queue(queue, **kwargs)  # type: ignore[no-untyped-call]
            return None
        return super().queue_declare(queue, passive, **kwargs)  # type: ignore[no-untyped-call]

    def stored(self, queue: str, message: dict[str, Any]) -> tuple[int, str]:
        """Return the priority step of ``message`` (``prepare_message``'s) and the text
        ``basic_publish`` through the default exchange stores for it on ``queue``: kombu's
        body encoding, delivery tag and delivery info, added to ``message``."""
        self._inplace_augment_message(message, "", queue)  # type: ignore[no-untyped-call]
        step = self._get_message_priority(message, reverse=False)  # type: ignore[no-untyped-call]
        return step, dumps(message)  # type: ignore[no-untyped-call]

    def step_of(self, priority: int | None) -> int:
        """Return the priority step of a message whose ``priority`` property is ``priority``."""
        return self._get_message_priority({"properties": {"priority": priority}})  # type: ignore[no-any-return,no-untyped-call]

    def push_stored(self, queue: str, stored: Sequence[tuple[int, str, Any]]) -> None:
        """Put messages, each its priority step and text (``stored``), on ``queue`` in order,
        in one round trip.

        They go in one LPUSH per priority step (of at most ``PUSH_CHUNK`` messages), in one
        pipeline, where ``basic_publish`` sends one LPUSH each: the lists end up the same.
        Raises what Redis raises; then some of the messages may be on the queue.
        """
        expires = self._expires and queue in self._expires
        if len(stored) == 1 and not expires:  # one message (``add``): kombu's own one LPUSH
            step, payload, *_ = stored[0]
            with self.conn_or_acquire() as client:
                client.lpush(self._q_for_pri(queue, step), payload)  # type: ignore[no-untyped-call]
            return
        lists: dict[str, list[str]] = {}
        for step, payload, *_ in stored:
            key = self._q_for_pri(queue, step)  # type: ignore[no-untyped-call]
            lists.setdefault(key, []).append(payload)
        with self.conn_or_acquire() as client, client.pipeline(transaction=False) as pipe:
            for key, payloads in lists.items():
                for start in range(0, len(payloads), PUSH_CHUNK):
                    pipe.lpush(key, *payloads[start : start + PUSH_CHUNK])
            if expires:  # as kombu's _put: the lists' expiry
                for step in self.priority_steps:
                    key = self._q_for_pri(queue, step)  # type: ignore[no-untyped-call]
                    pipe.pexpire(key, self._expires[queue])
            pipe.execute()

    def basic_consume(self, queue: Any, *args: Any, **kwargs: Any) -> Any:
        """Consume ``queue``; the taker records its turns if it is consumed with acks."""
        no_ack = kwargs.get("no_ack", args[0] if args else False)
        (self._taker.acked_queues.discard if no_ack else self._taker.acked_queues.add)(queue)
        return super().basic_consume(queue, *args, **kwargs)  # type: ignore[no-untyped-call]

    @cached_property
    def _taker(self) -> Taker:
        return Taker(self)

    def _brpop_read(self, **options: Any) -> Any:
        """kombu's, but a turn's messages are taken and recorded by the taker, in one call."""
        client = self.client
        try:
            try:
                dest_item = client.parse_response(client.connection, "BRPOP", **options)
            except self.connection_errors:
                client.connection.disconnect()  # reconnect at the next turn
                raise
            if not dest_item:
                raise Empty()
            dest, item = dest_item
            queue = text(dest).rsplit(self.sep, 1)[0]
            self._queue_cycle.rotate(queue)
            if self._taker.takes(queue):
                self._taker.turn(queue, text(item), self.connection._deliver)
            else:
                self.connection._deliver(loads(text(item)), queue)  # type: ignore[no-untyped-call]
            return True
        finally:
            self._in_poll = None  # type: ignore[assignment]
            flush_reauth = getattr(self, "_flush_brpop_reauth", None)  # kombu >= 5.7
            if flush_reauth is not None:
                flush_reauth()

    def _brpop_start(self, timeout: Any = None) -> Any:
        """Rebuild the fair cycle if queues changed, then start kombu's BRPOP."""
        if self._queue_cycle_stale:
            self._queue_cycle_stale = False
            super()._update_queue_cycle()  # type: ignore[no-untyped-call]
        return super()._brpop_start(timeout)  # type: ignore[no-untyped-call]


class Transport(redis.Transport):
    """The ``redis://`` transport with ``Channel`` above."""

    Channel = Channel
