"""Poison messages published by hand next to real jobs: never run, dead-lettered, worker goes on.

Runs on the embedded broker, Redis and RabbitMQ, with a real prefork ``celery worker``.
"""

from __future__ import annotations

import json
import pickle
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from kombu.connection import Connection
from kombu.entity import Exchange, Queue
from kombu.messaging import Producer

from adapter import CeleryJobQueueStrategy, Job, JobState
from adapter.celery.envelope import DEAD_LETTER_REASON_HEADER, TASK_NAME
from adapter.celery.routing import celery_queue
from tests.integration.conftest import WorkerProcess
from tests.support import delete_queues, unique_queue, wait_for, wait_settled


class Trap:
    """Unpickling this touches a file: proof that a worker deserialized the message."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (self.marker.touch, ())


def publish(
    connection: Connection, queue: str, body: bytes, content_type: str, headers: dict[str, Any]
) -> None:
    """Put one raw message on the celery queue of ``queue``."""
    name = celery_queue(queue)
    exchange = Exchange(name, "direct")  # type: ignore[no-untyped-call]
    Producer(connection.default_channel).publish(  # type: ignore[no-untyped-call]
        body,
        exchange=exchange,
        routing_key=name,
        content_type=content_type,
        content_encoding="binary" if content_type.endswith("serialize") else "utf-8",
        headers=headers,
        declare=[Queue(name, exchange, routing_key=name)],  # type: ignore[no-untyped-call]
    )


def test_poison_is_dead_lettered_and_valid_jobs_complete(
    producer: CeleryJobQueueStrategy,
    make_worker: Callable[..., WorkerProcess],
    tmp_path: Path,
) -> None:
    queue = unique_queue("poison")
    dead_letter_queue = unique_queue("dead")
    marker = tmp_path / "unpickled"
    valid_wire = Job(id=str(uuid.uuid4()), queue_name=queue, data={"ok": True}).to_wire()
    poison = {  # task id -> (body, content type, task name, expected reason)
        "pickled": (
            pickle.dumps(([Trap(marker)], {}, {})),
            "application/x-python-serialize",
            TASK_NAME,
            "content type 'application/x-python-serialize' is refused",
        ),
        "bad-json": (b'[[{"id": ', "application/json", TASK_NAME, "the body is not JSON"),
        "wrong-shape": (
            json.dumps([[{"data": {"no": "queueName"}}], {}, {}]).encode(),
            "application/json",
            TASK_NAME,
            "not a valid job",
        ),
        "two-args": (
            json.dumps([[valid_wire, valid_wire], {}, {}]).encode(),
            "application/json",
            TASK_NAME,
            "a job message has one argument, the job; this one has 2",
        ),
        "unknown-task": (
            json.dumps([[valid_wire], {}, {}]).encode(),
            "application/json",
            "evil.delete_everything",
            "unknown task 'evil.delete_everything'",
        ),
        "no-task-header": (b"{}", "application/json", "", "no task header"),
    }
    worker = make_worker(
        f"{queue}=echo", "-P", "prefork", "-c", "2", TEST_DEAD_LETTER_QUEUE=dead_letter_queue
    )
    try:
        worker.start()
        before = producer.add(Job(queue_name=queue, data={"n": 1}))
        with producer.app.connection_for_write() as connection:
            for task_id, (body, content_type, task, _) in poison.items():
                headers = {"task": task, "id": task_id} if task else {}
                publish(connection, queue, body, content_type, headers)
        after = producer.add(Job(queue_name=queue, data={"n": 2}))
        done = [wait_settled(producer, job) for job in (before, after)]
        letters = wait_for(
            lambda: found if len(found := producer.dead_letters()) >= len(poison) else None,
            "every poison message to be dead-lettered",
        )
        alive = worker.popen is not None and worker.popen.poll() is None
        kept = _drain(producer, dead_letter_queue, len(poison))
    finally:
        worker.stop()
        delete_queues(producer, queue, dead_letter_queue)

    assert [job.state for job in done] == [JobState.COMPLETED, JobState.COMPLETED]
    assert alive
    assert not marker.exists(), "a worker unpickled a message"
    by_id = {letter.task_id or "no-task-header": letter for letter in letters}
    assert set(by_id) == set(poison)
    for task_id, (_, content_type, _, reason) in poison.items():
        assert reason in by_id[task_id].reason, (task_id, by_id[task_id].reason)
        assert by_id[task_id].queue == celery_queue(queue)
        assert by_id[task_id].content_type == content_type
    assert by_id["bad-json"].body == '[[{"id": '
    assert producer.find_many({"filter": {"queueName": {"eq": queue}}}).total_items == 2
    if producer.app.conf.broker_url.startswith("amqp"):
        assert sorted(kept) == sorted(poison)  # the messages themselves, with the reason
    else:
        assert kept == {}


def _drain(
    producer: CeleryJobQueueStrategy, dead_letter_queue: str, expected: int
) -> dict[str, str]:
    """Return task id -> reason header of the messages kept on RabbitMQ's dead-letter queue,
    once ``expected`` have arrived (a message is recorded before it is rejected to the queue,
    so the last one may still be on its way when its record is read)."""
    if not producer.app.conf.broker_url.startswith("amqp"):
        return {}
    kept: dict[str, str] = {}
    with producer.app.connection_for_write() as connection:
        channel = connection.default_channel

        def arrived() -> dict[str, str] | None:
            while (message := channel.basic_get(dead_letter_queue, no_ack=True)) is not None:
                headers = message.headers or {}
                task_id = str(headers.get("id") or "no-task-header")
                kept[task_id] = headers[DEAD_LETTER_REASON_HEADER]
            return kept if len(kept) >= expected else None

        wait_for(arrived, f"{expected} messages on the dead-letter queue", report=lambda: kept)
    return kept
