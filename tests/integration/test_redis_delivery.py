"""Redis: a BRPOP turn takes up to the prefetch's room, each message recorded as kombu would."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from kombu.connection import Connection
from kombu.entity import Exchange, Queue
from kombu.messaging import Consumer, Producer

from adapter.celery.redis_transport import Transport


@pytest.fixture
def queue(redis_url: str) -> Iterator[Queue]:
    """A unique queue on the tests' Redis, deleted with whatever is left of it."""
    name = f"delivery-{uuid.uuid4().hex[:10]}"
    exchange = Exchange(name, type="direct")  # type: ignore[no-untyped-call]
    found = Queue(name, exchange, routing_key=name, max_priority=9)  # type: ignore[no-untyped-call]
    yield found
    client = redis.Redis.from_url(redis_url)
    client.delete(*client.keys(f"{name}*"), f"_kombu.binding.{name}")
    client.close()


@pytest.fixture
def connection(redis_url: str) -> Iterator[Any]:
    """A kombu connection through the adapter's ``redis://`` transport."""
    with Connection(redis_url, transport=Transport) as found:  # type: ignore[no-untyped-call]
        yield found


@pytest.fixture
def client(redis_url: str) -> Iterator[redis.Redis]:
    """A plain client of the same Redis, to look at kombu's keys."""
    found = redis.Redis.from_url(redis_url, decode_responses=True)
    yield found
    found.close()


def _publish(connection: Any, queue: Queue, bodies: list[dict[str, Any]]) -> None:
    with connection.channel() as channel:
        producer = Producer(channel)  # type: ignore[no-untyped-call]
        for body in bodies:
            priority = body.get("priority", 0)
            producer.publish(  # type: ignore[no-untyped-call]
                body, exchange=queue.exchange, routing_key=queue.routing_key,
                declare=[queue], priority=priority,
            )  # fmt: skip


def _take(connection: Any, queue: Queue, prefetch: int) -> tuple[Any, list[Any]]:
    """Consume with ``prefetch`` until no more messages arrive; return the channel and them."""
    channel = connection.channel()
    channel.basic_qos(0, prefetch, False)
    received: list[Any] = []
    consumer = Consumer(  # type: ignore[no-untyped-call]
        channel, [queue], callbacks=[lambda _, message: received.append(message)]
    )
    consumer.consume()  # type: ignore[no-untyped-call]
    try:
        while True:
            connection.drain_events(timeout=0.5)
    except TimeoutError:
        pass
    return channel, received


def test_a_turn_takes_the_prefetch_room_and_records_each_message_as_kombu_does(
    connection: Any, client: redis.Redis, queue: Queue
) -> None:
    _publish(connection, queue, [{"n": n} for n in range(7)])
    channel, received = _take(connection, queue, prefetch=5)
    assert [message.payload["n"] for message in received] == [0, 1, 2, 3, 4]
    assert client.llen(queue.name) == 2  # the rest waits for room
    for message in received:
        stored = json.loads(client.hget(channel.unacked_key, message.delivery_tag) or "null")
        assert stored == [message._raw, queue.name, queue.name]  # as kombu's append writes it
        assert client.zscore(channel.unacked_index_key, message.delivery_tag) is not None
    for message in received:
        message.ack()
        assert client.hget(channel.unacked_key, message.delivery_tag) is None
    channel.close()


def test_messages_taken_and_never_acknowledged_go_back_to_their_queue(
    connection: Any, client: redis.Redis, queue: Queue
) -> None:
    _publish(connection, queue, [{"n": n} for n in range(4)])
    channel, received = _take(connection, queue, prefetch=4)
    assert len(received) == 4
    channel.close()  # kombu hands back what its channel holds unacknowledged
    assert client.llen(queue.name) == 4
    assert not any(client.hexists("unacked", message.delivery_tag) for message in received)


def test_a_turn_reads_the_higher_priorities_first(connection: Any, queue: Queue) -> None:
    _publish(connection, queue, [{"n": n, "priority": n % 3 * 4} for n in range(6)])
    channel, received = _take(connection, queue, prefetch=6)
    assert [message.payload["priority"] for message in received] == [8, 8, 4, 4, 0, 0]
    channel.close()
