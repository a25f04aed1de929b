"""Sending a job message straight on its producer's channel: Celery's send, minus its layers.

Celery's ``app.amqp.send_task_message`` hands a message to kombu's ``Producer.publish``, which
hands it to ``Producer._publish`` and then to the channel; each layer re-derives, per message,
answers that never change for a job message on its own, already declared, queue (the exchange,
the delivery mode, the retry wrapper, the declarations). ``DirectSender.send`` does what those
layers do for that one case, and the broker gets the same message: the body serialized by kombu with
the task's serializer, the same headers and properties (``delivery_mode`` persistent unless the
queue's exchange says otherwise, the priority, ``mandatory``/``immediate`` as Celery passes
them), published through the default exchange with the celery queue's name as routing key, as
Celery does for a direct exchange it is not told to use. ``before_task_publish`` and
``after_task_publish`` are sent with the arguments Celery gives them, when anything but the
adapter's own span enrichment listens (``observability.others_listen``); inside kombu's
``Producer.batch`` the message joins the batch.

``DirectSender.applies`` says when this applies; otherwise the caller uses Celery's send:
- the queue is a kombu ``Queue`` on a direct exchange, declared on this connection, and the
  options name no exchange with a routing key, and no option unknown here;
- no compression (``task_compression``, or the message's), no ``task-sent`` event for the
  message, no receiver of Celery's deprecated ``task_sent`` signal, and not a worker's
  callback publish (Celery's own retry of only that message).

A message the channel refuses outside a batch is handed to Celery's send when
``task_publish_retry`` (or the ``retry`` option) is on, which retries it with its policy and
reconnects (a copy may reach the broker twice, as with Celery's own retry: the worker runs the
job once); with retries off the error is raised as Celery's send would raise it.

``send`` takes a connection, not a producer: the publisher takes one from the pool the
producer pool draws from and publishes on its default channel (a pooled producer's channel),
so no producer is revived per message; a producer is taken only for Celery's send.

On py-amqp, ``send`` writes the frames with ``amqp_frames`` (the bytes ``basic_publish``
writes, with less work per message) where it applies.

``add_many``'s messages of one celery queue go in one go when nothing but the adapter listens
to the publish signals and no traces are recorded (both are per message): on the adapter's
Redis channel ``push_many`` sends them as one LPUSH per priority step (``Channel.push_stored``,
recast as the text Redis stores: ``stored_message``); on py-amqp ``write_many`` sends
``MESSAGES_PER_WRITE`` of them per socket write. A single ``add`` recast from its queue's
last message goes the same way on Redis (``push_one``: the queue's stored text, kept per
queue, thread and process, filled in for the job, and one LPUSH), under the same conditions;
a push Redis refuses is handed to Celery's send when publish retries are on.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, Final

from celery.app import amqp as celery_amqp
from celery.signals import after_task_publish, before_task_publish, task_sent
from kombu.common import maybe_declare
from kombu.entity import Queue, maybe_delivery_mode
from kombu.serialization import dumps

from adapter import tracing
from adapter.celery import amqp_frames
from adapter.celery.envelope import TASK_NAME
from adapter.celery.observability import others_listen
from adapter.celery.priority import broker_priority
from adapter.celery.stored_message import StoredTemplate

if TYPE_CHECKING:
    from adapter.celery.recasting import PreparedGroup, Recast
    from adapter.job import Job

#: The ``send_task_message`` options ``DirectSender`` knows what to do with.
KNOWN_OPTIONS: Final = frozenset(
    {
        "queue",
        "exchange",
        "routing_key",
        "priority",
        "serializer",
        "delivery_mode",
        "compression",
        "immediate",
        "mandatory",
        "declare",
        "retry",
    }
)
#: Options Celery moves into the message's properties, which kombu then takes as arguments.
_PUBLISH_ARGUMENTS: Final = ("priority", "immediate", "mandatory")
#: Messages ``write_many`` sends per socket write (py-amqp: one write per message).
MESSAGES_PER_WRITE: Final = 128


class DirectSender:
    """Sends job messages on a producer's channel, for one app.

    The app's publish settings are read once, as Celery's ``send_task_message`` reads them.
    """

    def __init__(self, app: Any) -> None:
        conf = app.conf
        self._compression = conf.task_compression
        self._serializer = conf.task_serializer
        self._delivery_mode = conf.task_default_delivery_mode
        self._retry = conf.task_publish_retry
        self._retry_policy = conf.task_publish_retry_policy
        self._frames = amqp_frames.FrameWriter()

    def applies(self, connection: Any, message: Any, options: dict[str, Any]) -> bool:
        """True when ``send`` sends ``message`` on ``connection`` as Celery's send would (see
        the module)."""
        return message.sent_event is None and self._options_apply(connection, options)

    def _options_apply(self, connection: Any, options: dict[str, Any]) -> bool:
        """True when a message with no ``task-sent`` event is sent as Celery's send would."""
        queue = options.get("queue")
        if not isinstance(queue, Queue) or queue.exchange is None:
            return False
        return (
            queue.exchange.type == "direct"
            and not (options.get("exchange") and options.get("routing_key"))
            and KNOWN_OPTIONS.issuperset(options)
            and not (options.get("compression") or self._compression)
            and not task_sent.receivers
            and not celery_amqp._callback_publish_retry.get()
            and hash(queue) in connection.declared_entities
        )

    def send(
        self, connection: Any, message: Any, options: dict[str, Any], batch: Any = None
    ) -> bool:
        """Send ``message`` on ``connection``'s default channel (a pooled producer's) or into
        kombu's ``batch`` of a producer on it; False when Celery's send should retry it.

        Only for a message ``applies`` accepted.
        """
        headers, properties, body, _ = message
        routing_key = options["queue"].name
        _take_publish_arguments(properties, options)
        if others_listen(before_task_publish):
            before_task_publish.send(
                sender=TASK_NAME,
                body=body,
                exchange="",
                routing_key=routing_key,
                declare=options.get("declare", []),
                headers=headers,
                properties=properties,
                retry_policy=dict(self._retry_policy or {}),
            )
        channel = connection.default_channel
        arguments = {
            "exchange": "",
            "routing_key": routing_key,
            "mandatory": properties.get("mandatory"),
            "immediate": properties.get("immediate"),
            "timeout": None,
            "confirm_timeout": None,
        }
        kombu_message = self._channel_message(channel, message, options)
        if batch is not None:  # kombu's Producer.batch: its errors are the batch's
            batch.publish(channel, kombu_message, **arguments)
        else:
            try:
                if amqp_frames.applies(channel):
                    self._frames.write(channel, [self._publish(kombu_message, arguments)])
                else:
                    channel.basic_publish(kombu_message, **arguments)
            except Exception:
                drop(connection)
                if not self.retries(options):
                    raise
                return False
        if others_listen(after_task_publish):
            after_task_publish.send(
                sender=TASK_NAME,
                body=body,
                headers=headers,
                exchange="",
                routing_key=routing_key,
            )
        return True

    def retries(self, options: dict[str, Any]) -> bool:
        """True when a message the channel refused goes to Celery's send, which retries it."""
        return bool(options.get("retry", self._retry))

    def push_one(self, connection: Any, recast: Recast, job: Job, options: dict[str, Any]) -> bool:
        """Send ``job``'s message as the text Redis stores, recast from the queue's last one
        (``recast.stored``, made here from ``recast.message`` on first use); False (nothing
        sent) where ``push_many`` would not apply, outside a channel with ``push_stored``, or
        for a job ``recasts`` refuses. On ``connection``'s default channel (a producer's, were
        it taken from the producer pool): no producer is revived for it.

        ``options``: the queue's, made what the broker takes (``JobPublisher._for_broker``).
        Raises what the channel raises (the caller hands the message to Celery's retry).
        """
        channel = connection.default_channel
        queue = options["queue"]
        stored = recast.stored
        if not hasattr(channel, "push_stored"):  # not Redis: nor will the app's others be
            recast.stored = False
            return False
        if (
            stored is False
            or not self._goes_at_once(connection, queue)
            or (stored is not None and not stored.recasts(job))
        ):
            return False
        if not self._options_apply(connection, options):  # a template has no task-sent event
            return False
        if stored is None:  # the first recast here: its stored form becomes the template
            message = recast.message.message(job)
            step, text, kombu_message = self._stored(channel, queue.name, message, options)
            assert kombu_message is not None
            serializer = options.get("serializer") or self._serializer
            made = StoredTemplate.of(channel, kombu_message, job, message.body, serializer)
            recast.stored = False if made is None else made
            channel.push_stored(queue.name, [(step, text, None)])
            return True
        priority = options["priority"] or channel.default_priority
        channel.push_stored(
            queue.name, [(channel.step_of(priority), stored.stored(channel, job, priority), None)]
        )
        return True

    def push_many(self, producer: Any, group: PreparedGroup) -> bool:
        """Send the messages of one celery queue in one go, where the channel can (Redis's
        ``Channel.push_stored``: one LPUSH per priority step); False (nothing sent) elsewhere,
        or when anything listens to the publish signals or traces (they are per message).

        A message the group recasts is recast as the text Redis stores
        (``stored_message.StoredTemplate``), else built. Declares the queue first if this
        connection has not. Raises what the channel raises.
        """
        channel = producer.channel
        first, options = group.first
        queue = options["queue"]
        if not (hasattr(channel, "push_stored") and self._goes_at_once(producer.connection, queue)):
            return False
        driver = producer.connection.transport.driver_type
        if group.template is None:
            prepared = group.messages()
            for _message, job_options in prepared[1:]:  # the first's is the broker's already
                job_options["priority"] = broker_priority(driver, job_options["priority"])
            if not all(
                self.applies(producer.connection, message, options) for message, options in prepared
            ):
                return False
            channel.push_stored(
                queue.name, [self._stored(channel, queue.name, *pair) for pair in prepared]
            )
            return True
        # The recast messages differ from the first in their priority only, as ``applies``
        # reads them.
        if not self.applies(producer.connection, first, options):
            return False
        stored = [self._stored(channel, queue.name, first, options)]
        assert stored[0][2] is not None
        serializer = options.get("serializer") or self._serializer
        template = StoredTemplate.of(channel, stored[0][2], group.jobs[0], first.body, serializer)
        rest = group.jobs[1:]
        recast = group.messages()[1:] if template is None else None
        for index, job in enumerate(rest):
            if template is not None and template.recasts(job):
                priority = broker_priority(driver, job.priority) or channel.default_priority
                text = template.stored(channel, job, priority)
                stored.append((channel.step_of(priority), text, None))
                continue
            if recast is None:
                recast = group.messages()[1:]
            message, job_options = recast[index]
            job_options["priority"] = broker_priority(driver, job_options["priority"])
            stored.append(self._stored(channel, queue.name, message, job_options))
        channel.push_stored(queue.name, stored)
        return True

    def write_many(
        self, producer: Any, prepared: list[tuple[Any, dict[str, Any]]]
    ) -> Iterator[int]:
        """Send the messages of one celery queue on a py-amqp channel, ``MESSAGES_PER_WRITE``
        to a socket write (``amqp_frames``), yielding how many each write sent.

        Only where ``amqp_frames.applies`` to the channel and ``sends_many`` says yes. Raises
        what ``basic_publish`` raises; the messages of the failed write are not known sent.
        """
        channel = producer.channel
        publishes = []
        for message, options in prepared:
            _take_publish_arguments(message.properties, options)
            arguments = {name: message.properties.get(name) for name in ("mandatory", "immediate")}
            kombu_message = self._channel_message(channel, message, options)
            publishes.append(
                self._publish(kombu_message, {**arguments, "routing_key": options["queue"].name})
            )
        for start in range(0, len(publishes), MESSAGES_PER_WRITE):
            chunk = publishes[start : start + MESSAGES_PER_WRITE]
            self._frames.write(channel, chunk)
            yield len(chunk)

    def sends_many(self, producer: Any, prepared: list[tuple[Any, dict[str, Any]]]) -> bool:
        """True when the messages of one celery queue may go in one go (``_goes_at_once``)
        and ``applies`` to each."""
        return bool(prepared) and (
            self._goes_at_once(producer.connection, prepared[0][1]["queue"])
            and all(
                self.applies(producer.connection, message, options) for message, options in prepared
            )
        )

    def _goes_at_once(self, connection: Any, queue: Any) -> bool:
        """True when nothing but the adapter listens to the publish signals and no traces are
        recorded (both are per message). Declares ``queue`` first if this connection has not.
        """
        if others_listen(before_task_publish) or others_listen(after_task_publish):
            return False
        if tracing.enabled():
            return False
        if isinstance(queue, Queue) and hash(queue) not in connection.declared_entities:
            maybe_declare(  # type: ignore[no-untyped-call]
                queue, connection.default_channel, self._retry, **(self._retry_policy or {})
            )
        return True

    @staticmethod
    def _publish(kombu_message: Any, arguments: dict[str, Any]) -> amqp_frames.Publish:
        """Return the ``amqp_frames.Publish`` of ``basic_publish(kombu_message, **arguments)``
        through the default exchange."""
        return amqp_frames.Publish(
            kombu_message,
            "",
            arguments["routing_key"],
            bool(arguments["mandatory"]),
            bool(arguments["immediate"]),
        )

    def _stored(
        self, channel: Any, queue: str, message: Any, options: dict[str, Any]
    ) -> tuple[int, str, dict[str, Any] | None]:
        """Return ``channel.stored`` of ``message``: its priority step, text and kombu message."""
        _take_publish_arguments(message.properties, options)
        kombu_message = self._channel_message(channel, message, options)
        step, text = channel.stored(queue, kombu_message)
        return step, text, kombu_message

    def _channel_message(self, channel: Any, message: Any, options: dict[str, Any]) -> Any:
        """Return ``channel.prepare_message`` of ``message``, as kombu's producer makes it."""
        headers, properties, body, _ = message
        content_type, content_encoding, data = dumps(  # type: ignore[no-untyped-call]
            body, serializer=options.get("serializer") or self._serializer
        )
        sent = {name: value for name, value in properties.items() if name not in _PUBLISH_ARGUMENTS}
        sent["delivery_mode"] = maybe_delivery_mode(  # type: ignore[no-untyped-call]
            options.get("delivery_mode")
            or options["queue"].exchange.delivery_mode
            or self._delivery_mode
        )
        return channel.prepare_message(
            data, properties.get("priority"), content_type, content_encoding, headers, sent
        )


def drop(connection: Any) -> None:
    """Close what a refused send left of ``connection`` (kombu's ``collect``, as kombu's
    ``ensure`` does before it reconnects): its socket, channels and declarations. Back in the
    pool it then reconnects on next use, rather than hold a dead socket nobody closes."""
    with contextlib.suppress(Exception):
        connection.collect()


def _take_publish_arguments(properties: dict[str, Any], options: dict[str, Any]) -> None:
    """Put the publish arguments of ``options`` in ``properties``, as Celery does."""
    properties.update((name, options[name]) for name in _PUBLISH_ARGUMENTS if name in options)
