"""RabbitMQ reads the frames ``amqp_frames.FrameWriter`` writes as the messages py-amqp's
``basic_publish`` sends: headers, properties and body, for varied messages."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import amqp
import pytest

from adapter.celery import amqp_frames
from adapter.celery.amqp_frames import FrameWriter, Publish
from tests.servers import require
from tests.support import unique_queue

pytestmark = pytest.mark.rabbitmq


@pytest.fixture
def channel() -> Iterator[Any]:
    """A py-amqp channel on the test RabbitMQ, and a queue of its own (``channel.test_queue``)."""
    url = urlsplit(require("amqp"))
    connection = amqp.Connection(
        f"{url.hostname}:{url.port or 5672}", userid=url.username, password=url.password
    )
    connection.connect()
    opened = connection.channel()
    name = unique_queue("frames")
    opened.queue_declare(name, auto_delete=False, arguments={"x-max-priority": 9})
    opened.test_queue = name
    try:
        yield opened
    finally:
        opened.queue_delete(name)
        connection.close()


def messages() -> list[amqp.Message]:
    """Messages of every kind the adapter sends, and some it does not."""
    headers = {
        "lang": "py",
        "task": "adapter.run_job",
        "id": "ü-1",
        "eta": None,
        "retries": 0,
        "timelimit": [None, 30.5],
        "argsrepr": "[job ü-1 on 'crème']",
        "ignore_result": False,
        "stamps": {},
        "nested": {"list": [1, "two", None, {"deep": True}], "big": 2**40},
        "when": datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),
    }
    common = {"content_type": "application/json", "content_encoding": "utf-8", "delivery_mode": 2}
    return [
        amqp.Message('[["ünïcødé ✓"], {}, {}]', application_headers=headers, **common),
        amqp.Message(
            "é" * 200_000,  # larger than frame_max: several body frames
            application_headers={**headers, "id": "big"},
            correlation_id="big",
            **common,
        ),
        amqp.Message(b"urgent", priority=9, reply_to="r", message_id="m", **common),
        amqp.Message(b"", application_headers={"empty": ""}, **common),
    ]


def received(channel: Any, count: int) -> list[tuple[Any, ...]]:
    """Take ``count`` messages off the channel's queue: what a consumer sees of each."""
    taken = []
    for _ in range(count):
        message = channel.basic_get(channel.test_queue, no_ack=True)
        assert message is not None
        properties = dict(message.properties)
        taken.append((message.body, properties, message.delivery_info["routing_key"]))
    return taken


def test_rabbitmq_reads_the_frames_as_the_messages_basic_publish_sends(channel: Any) -> None:
    assert amqp_frames.applies(channel)
    for message in messages():
        channel.basic_publish(message, exchange="", routing_key=channel.test_queue)
    by_py_amqp = received(channel, len(messages()))
    writer = FrameWriter()
    publishes = [Publish(message, "", channel.test_queue, False, False) for message in messages()]
    writer.write(channel, publishes[:1])  # one message a write (add), then several (add_many)
    writer.write(channel, publishes[1:])
    by_writer = received(channel, len(messages()))
    assert by_writer == by_py_amqp
    assert "é" * 200_000 in [body for body, _, _ in by_writer]  # the big body, whole


def test_the_frames_are_not_written_where_publishes_are_confirmed() -> None:
    url = urlsplit(require("amqp"))
    connection = amqp.Connection(
        f"{url.hostname}:{url.port or 5672}",
        userid=url.username,
        password=url.password,
        confirm_publish=True,
    )
    connection.connect()
    try:
        assert not amqp_frames.applies(connection.channel())
    finally:
        connection.close()
