"""The add path: Celery's own message and signals, nothing added when the broker refuses it,
time-ordered ids, and every job written behind its publish in the store for other processes
after ``flush``."""

from __future__ import annotations

import contextlib
import socket
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from celery import Celery
from celery.signals import after_task_publish, before_task_publish
from kombu.entity import Queue as KombuQueue

from adapter import CeleryJobQueueStrategy, Job, JobState, PublishError
from adapter.celery.amqp_frames import FrameWriter
from adapter.celery.direct import DirectSender
from adapter.celery.envelope import QUEUE_HEADER, TASK_NAME, TIMEOUT_HEADER
from adapter.celery.priority import broker_priority
from adapter.celery.routing import celery_queue
from adapter.celery.stored_message import StoredTemplate
from adapter.store import JobStore


@contextmanager
def published() -> Iterator[dict[str, list[dict[str, Any]]]]:
    """Record, per task id, what Celery's publish signals saw of each message."""
    seen: dict[str, list[dict[str, Any]]] = {}

    def before(headers: dict[str, Any], **message: Any) -> None:
        keep = ("body", "exchange", "routing_key", "properties")
        record = {"headers": dict(headers), **{name: message[name] for name in keep}}
        seen.setdefault(headers["id"], []).append(record)

    def after(headers: dict[str, Any], **_: Any) -> None:
        seen[headers["id"]][-1]["after_task_publish"] = True

    before_task_publish.connect(before, weak=False)
    after_task_publish.connect(after, weak=False)
    try:
        yield seen
    finally:
        before_task_publish.disconnect(before)
        after_task_publish.disconnect(after)


def test_add_publishes_the_message_apply_async_would_send(
    strategy: CeleryJobQueueStrategy, queue: str
) -> None:
    with published() as seen:
        strategy.add(Job(queue_name=queue, data="declares the celery queue"))
        job = strategy.add(Job(queue_name=queue, data={"to": "ada@example.com"}))
        [added] = seen[str(job.id)]
        strategy.app.tasks[TASK_NAME].apply_async(
            args=list(added["body"][0]),
            task_id=job.id,
            queue=celery_queue(queue),
            headers={QUEUE_HEADER: queue},
            argsrepr=f"[job {job.id} on {queue!r}]",
            kwargsrepr="{}",
        )
        [_, by_celery] = seen[str(job.id)]
    assert added == by_celery
    assert added["after_task_publish"] is True
    assert (added["headers"]["task"], added["routing_key"]) == (TASK_NAME, celery_queue(queue))
    assert added["headers"][QUEUE_HEADER] == queue
    assert added["body"][0][0]["data"] == {"to": "ada@example.com"}


def test_add_sends_a_task_sent_event_when_the_setting_is_on(
    strategy: CeleryJobQueueStrategy, queue: str
) -> None:
    app = strategy.app
    sent: dict[str, dict[str, Any]] = {}
    app.conf.task_send_sent_event = True
    try:
        with app.connection_for_read() as connection:
            receiver = app.events.Receiver(
                connection,
                handlers={"task-sent": lambda event: sent.update({event["uuid"]: event})},
            )
            with receiver.consumer_context() as (conn, _, _):
                with contextlib.suppress(socket.timeout):
                    conn.drain_events(timeout=0.5)  # listening now (Redis events are pub/sub)
                job = strategy.add(Job(queue_name=queue, data=1))
                while job.id not in sent:
                    conn.drain_events(timeout=10)  # socket.timeout fails the test
    finally:
        app.conf.task_send_sent_event = False
    event = sent[str(job.id)]
    assert (event["name"], event["queue"]) == (TASK_NAME, celery_queue(queue))


@pytest.fixture
def unreachable(tmp_path: Path) -> Iterator[CeleryJobQueueStrategy]:
    """A strategy whose broker refuses every connection, at once."""
    app = Celery("unreachable")
    app.config_from_object("celeryconfig")
    app.conf.update(
        broker_url="redis://127.0.0.1:1/0",
        broker_transport_options={"max_retries": 0},
        task_publish_retry=False,
    )
    made = CeleryJobQueueStrategy(
        app, store=f"sqlite:///{tmp_path / 'jobs.sqlite3'}", embedded_worker=False
    )
    yield made
    made.destroy()


@pytest.mark.parametrize(
    "how",
    [
        {},  # a fresh id: the job would be written behind its publish
        {"job_id": "given-id"},  # written first, removed when the publish fails
        {"idempotency_key": "order-42"},
    ],
)
def test_a_job_the_broker_refuses_is_not_added(
    unreachable: CeleryJobQueueStrategy, how: dict[str, str]
) -> None:
    job = Job(id=how.get("job_id"), queue_name="refused", data="x")
    with pytest.raises(PublishError, match="could not publish job to queue 'refused'"):
        unreachable.add(job, idempotency_key=how.get("idempotency_key"))
    unreachable.flush()
    assert unreachable.find_many().total_items == 0


def test_a_job_added_without_an_id_gets_a_time_ordered_uuid7(
    strategy: CeleryJobQueueStrategy, queue: str
) -> None:
    first = strategy.add(Job(queue_name=queue, data=1))
    time.sleep(0.002)  # the next millisecond
    second = strategy.add(Job(queue_name=queue, data=2))
    assert [uuid.UUID(str(job.id)).version for job in (first, second)] == [7, 7]
    assert str(first.id) < str(second.id)


def test_flush_puts_every_added_job_in_the_store_for_other_processes(
    strategy: CeleryJobQueueStrategy, queue: str, open_job_store: Callable[[], JobStore]
) -> None:
    other_process = open_job_store()
    try:
        added = [strategy.add(Job(queue_name=queue, data=n)) for n in range(300)]
        strategy.flush()
        seen = other_process.find_many_by_id([str(job.id) for job in added])
    finally:
        other_process.close()
    assert [(job.data, job.state) for job in seen] == [(n, JobState.PENDING) for n in range(300)]


def test_the_message_add_sends_on_the_wire_is_the_one_apply_async_sends(
    strategy: CeleryJobQueueStrategy, queue: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The broker gets the same headers, properties and body bytes from ``add`` (straight on
    the channel, ``adapter.celery.direct``) as from Celery's ``apply_async``."""
    sent_directly: list[str] = []
    send = DirectSender.send

    def spy(self: DirectSender, connection: Any, message: Any, *args: Any) -> bool:
        sent_directly.append(message.headers["id"])
        return send(self, connection, message, *args)

    monkeypatch.setattr(DirectSender, "send", spy)
    strategy.add(Job(queue_name=queue, data="declares the celery queue"))
    job = strategy.add(Job(queue_name=queue, data={"to": "ada@example.com", "n": [1, 2.5]}))
    sent_directly.append(str(job.id))  # on Redis the second went as text (``push_one``)
    with published() as seen:
        celery_sends(strategy, job, queue)
    assert len(seen[str(job.id)]) == 1 and sent_directly[-1] == job.id  # Celery's own send
    with strategy.app.connection_for_read() as connection:
        wire = KombuQueue(celery_queue(queue), channel=connection.default_channel)  # type: ignore[no-untyped-call]
        received = [wire.get(no_ack=True) for _ in range(3)]  # type: ignore[no-untyped-call]
    by_adapter, by_celery = (
        message for message in received if message and message.headers["id"] == job.id
    )

    assert seen_by_broker(by_adapter) == seen_by_broker(by_celery)


def seen_by_broker(message: Any) -> dict[str, Any]:
    """Return what a consumer reads of a message, but what the broker sets per delivery."""
    properties = {
        name: value
        for name, value in message.properties.items()
        if name not in ("delivery_tag", "delivery_info")  # the broker's, per message
    }
    return {
        "headers": message.headers,
        "properties": properties,
        "body": message.body,
        "content": (message.content_type, message.content_encoding),
        "routing_key": message.delivery_info.get("routing_key"),
    }


def celery_sends(strategy: CeleryJobQueueStrategy, job: Any, queue: str) -> None:
    """Send ``job``'s message as Celery's ``apply_async`` does, given what ``add`` gives it."""
    strategy.app.tasks[TASK_NAME].apply_async(
        args=[job.to_wire()],
        task_id=job.id,
        queue=celery_queue(queue),
        headers={QUEUE_HEADER: queue},
        argsrepr=f"[job {job.id} on {queue!r}]",
        kwargsrepr="{}",
    )


def test_the_messages_add_many_sends_on_the_wire_are_the_ones_apply_async_sends(
    strategy: CeleryJobQueueStrategy, queue: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``add_many`` recasts and frames its messages (``amqp_frames`` on RabbitMQ, one LPUSH on
    Redis): the broker still gets the bytes Celery sends, for unicode data and a body larger
    than RabbitMQ's frame_max (131072 bytes)."""
    datas = [{"to": "ada@example.com"}, "ünïcødé ✓ 東京", {"blob": "é" * 100_000}, [1, 2.5, None]]
    framed: list[int] = []
    write = FrameWriter.write

    def spy(self: FrameWriter, channel: Any, publishes: Any) -> None:
        framed.append(len(publishes))
        write(self, channel, publishes)

    monkeypatch.setattr(FrameWriter, "write", spy)
    added = strategy.add_many([Job(queue_name=queue, data=data) for data in datas])
    on_rabbitmq = strategy.app.conf.broker_url.startswith("amqp")
    assert framed == ([len(datas)] if on_rabbitmq else [])  # in one write
    for job in added:
        celery_sends(strategy, job, queue)
    with strategy.app.connection_for_read() as connection:
        channel = connection.default_channel
        wire = KombuQueue(celery_queue(queue), channel=channel)  # type: ignore[no-untyped-call]
        received = [
            wire.get(no_ack=True)  # type: ignore[no-untyped-call]
            for _ in range(2 * len(datas))
        ]
    by_id: dict[str, list[dict[str, Any]]] = {}
    for message in received:
        by_id.setdefault(message.headers["id"], []).append(seen_by_broker(message))
    for job in added:
        by_adapter, by_celery = by_id[str(job.id)]
        assert by_adapter == by_celery


def test_each_message_add_many_sends_on_the_wire_is_the_one_apply_async_sends(
    strategy: CeleryJobQueueStrategy, queue: str
) -> None:
    """``add_many`` recasts a queue's messages from its first (on Redis as the text Redis
    stores, ``adapter.celery.stored_message``): each is still the one ``apply_async`` sends,
    whatever differs between the jobs (id, data, priority, own timeout)."""
    jobs = strategy.add_many(
        [
            Job(
                queue_name=queue,
                data={"n": n, "text": 'caf\u00e9 \u2603 "quoted"', "list": [n] * n},
                priority=n % 3,
                timeout=2.5 if n in (3, 4) else None,
            )
            for n in range(7)
        ]
    )
    _assert_on_the_wire_as_apply_async_sends(strategy, queue, jobs)


def test_each_message_adds_one_by_one_send_on_the_wire_is_the_one_apply_async_sends(
    strategy: CeleryJobQueueStrategy, queue: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Single adds recast each message from the queue's last (on Redis as the text Redis
    stores, ``DirectSender.push_one``): each is still the one ``apply_async`` sends, whatever
    differs between the jobs (id, data, priority, own timeout)."""
    rendered: list[str] = []
    render = StoredTemplate.stored

    def spy(self: StoredTemplate, channel: Any, job: Job, priority: int) -> str:
        rendered.append(str(job.id))
        return render(self, channel, job, priority)

    monkeypatch.setattr(StoredTemplate, "stored", spy)
    jobs = [
        strategy.add(
            Job(
                queue_name=queue,
                data={"n": n, "text": 'caf\u00e9 \u2603 "quoted"', "list": [n] * n},
                priority=n % 3,
            ),
            timeout=2.5 if n in (3, 4, 6) else None,
        )
        for n in range(8)
    ]
    if strategy.app.conf.broker_url.startswith("redis"):
        # as text: the jobs with the timeout of the queue's second (its template), but that one
        assert rendered == [jobs[n].id for n in (2, 5, 7)]
    assert [job.timeout for job in jobs] == [None] * 3 + [2.5] * 2 + [None, 2.5, None]
    _assert_on_the_wire_as_apply_async_sends(strategy, queue, jobs)


def test_a_recast_job_redis_refuses_goes_to_celerys_send_and_is_not_added(
    strategy: CeleryJobQueueStrategy, queue: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A single add recast as text that Redis refuses (its queue's key holds a string) is handed
    to Celery's send, with its publish retry; that refuses too, so the add raises PublishError
    and the job is not in the store."""
    if not strategy.app.conf.broker_url.startswith("redis"):
        pytest.skip("the text recast is Redis's")
    # the first builds the template, the second its stored text, the third is recast as text
    added = [strategy.add(Job(queue_name=queue, data=n)) for n in range(3)]
    handed: list[str] = []
    send_task_message = strategy.app.amqp.send_task_message

    def spy(producer: Any, name: str, message: Any, **options: Any) -> Any:
        handed.append(message.headers["id"])
        return send_task_message(producer, name, message, **options)

    monkeypatch.setattr(strategy.app.amqp, "send_task_message", spy)
    monkeypatch.setitem(strategy.app.conf, "task_publish_retry_policy", {"max_retries": 0})
    with strategy.app.connection_for_write() as connection:
        client = connection.default_channel.client
        client.delete(celery_queue(queue))
        client.set(celery_queue(queue), "not a list")
        try:
            with pytest.raises(PublishError, match=f"could not publish job to queue {queue!r}"):
                strategy.add(Job(queue_name=queue, data="refused"))
        finally:
            client.delete(celery_queue(queue))
    [job_id] = handed
    strategy.flush()
    assert strategy.find_one(job_id) is None
    stored = strategy.find_many_by_id([str(job.id) for job in added])
    assert [job.data for job in stored] == [
        0,
        1,
        2,
    ]


def _assert_on_the_wire_as_apply_async_sends(
    strategy: CeleryJobQueueStrategy, queue: str, jobs: list[Any]
) -> None:
    """Take ``jobs``' messages off ``queue``'s celery queue, send each job with ``apply_async``
    and check that the broker holds the same message for each."""
    by_adapter = _take_messages(strategy, queue, len(jobs))
    with strategy.app.connection_for_write() as connection:
        driver = connection.transport.driver_type
    for job in jobs:
        strategy.app.tasks[TASK_NAME].apply_async(
            args=[job.to_wire()],
            task_id=job.id,
            queue=celery_queue(queue),
            headers={QUEUE_HEADER: queue}
            | ({} if job.timeout is None else {TIMEOUT_HEADER: job.timeout}),
            argsrepr=f"[job {job.id} on {queue!r}]",
            kwargsrepr="{}",
            priority=broker_priority(driver, job.priority),  # as the broker takes it
        )
    by_celery = _take_messages(strategy, queue, len(jobs))
    assert by_adapter.keys() == by_celery.keys() == {job.id for job in jobs}
    for job_id, message in by_adapter.items():
        assert message == by_celery[job_id]


def _take_messages(
    strategy: CeleryJobQueueStrategy, queue: str, count: int
) -> dict[str, dict[str, Any]]:
    """Take ``count`` messages off ``queue``'s celery queue: what the broker holds of each, by
    task id (all but its delivery tag and info, the broker's own per message)."""
    taken: dict[str, dict[str, Any]] = {}
    with strategy.app.connection_for_read() as connection:
        wire = KombuQueue(celery_queue(queue), channel=connection.default_channel)  # type: ignore[no-untyped-call]
        for _ in range(count):
            message = wire.get(no_ack=True)  # type: ignore[no-untyped-call]
            assert message is not None
            taken[message.headers["id"]] = seen_by_broker(message)
    return taken
