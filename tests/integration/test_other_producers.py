"""Producers that are not this library: a plain Celery app's ``send_task`` and a raw kombu
publish, following the job message's JSON Schema, get their jobs run and findable by task id;
a message breaking the schema is dead-lettered. On Redis and RabbitMQ, with a real worker.
"""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from collections.abc import Callable
from typing import Any

import jsonschema
import pytest
from kombu.connection import Connection
from kombu.entity import Exchange, Queue
from kombu.messaging import Producer

from adapter import CeleryJobQueueStrategy, JobState
from adapter.dead_letter import DeadLetter
from adapter.schema import job_message_schema
from tests.integration.conftest import ROOT, WorkerProcess
from tests.support import delete_queues, unique_queue, wait_for, wait_job

#: A shop's service with Celery alone: it publishes two jobs by task name and never imports
#: the adapter (it prints the task ids, and fails if the adapter was imported).
SEND_TASK_PRODUCER = """\
import json, sys
from celery import Celery

broker, queue = sys.argv[1:3]
app = Celery("other-service", broker=broker)
good = app.send_task(
    "adapter.run_job", args=[{"queueName": queue, "data": {"from": "send_task"}}],
    queue=f"jobs.{queue}",
)
bad = app.send_task(
    "adapter.run_job", args=[{"queueName": queue, "retries": -1}], queue=f"jobs.{queue}"
)
assert not [name for name in sys.modules if name.split(".")[0] == "adapter"], "adapter imported"
print(json.dumps({"good": good.id, "bad": bad.id}))
"""

EMBED = {"callbacks": None, "errbacks": None, "chain": None, "chord": None}


@pytest.fixture(params=["redis", "rabbitmq"])
def broker_url(request: pytest.FixtureRequest) -> str:
    """A real server's URL (overrides conftest's, which includes the embedded broker)."""
    return str(request.getfixturevalue("redis_url" if request.param == "redis" else "amqp_url"))


def dead_letter_of(producer: CeleryJobQueueStrategy, task_id: str) -> DeadLetter:
    """Wait for the dead letter of the message with ``task_id`` and return it."""

    def probe() -> DeadLetter | None:
        return next((d for d in producer.dead_letters() if d.task_id == task_id), None)

    return wait_for(probe, f"the message {task_id} to be dead-lettered")


def completed(producer: CeleryJobQueueStrategy, task_id: str) -> Any:
    """Wait until the job found by ``task_id`` completed and return it."""
    return wait_job(producer, task_id, lambda job: job.state == JobState.COMPLETED, "completed")


def test_a_plain_celery_send_task_runs_a_job_findable_by_its_task_id(
    producer: CeleryJobQueueStrategy,
    make_worker: Callable[..., WorkerProcess],
    broker_url: str,
) -> None:
    queue = unique_queue("send-task")
    worker = make_worker(f"{queue}=echo", "-P", "prefork", "-c", "1")
    try:
        worker.start()
        sent = subprocess.run(
            [sys.executable, "-c", SEND_TASK_PRODUCER, broker_url, queue],
            cwd=ROOT, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert sent.returncode == 0, sent.stderr
        ids = json.loads(sent.stdout)
        job = completed(producer, ids["good"])
        letter = dead_letter_of(producer, ids["bad"])
    finally:
        worker.stop()
        delete_queues(producer, queue)
    assert (job.id, job.queue_name, job.attempts) == (ids["good"], queue, 1)
    assert job.result["data"] == {"from": "send_task"}
    assert "retries is -1" in letter.reason
    assert producer.find_one(ids["bad"]) is None


def hand_built(queue: str, task_id: str, job: dict[str, Any], kwargs: Any) -> dict[str, Any]:
    """Return a protocol 2 job message, built by hand, as the schema names its parts."""
    return {
        "routingKey": f"jobs.{queue}",
        "contentType": "application/json",
        "contentEncoding": "utf-8",
        "headers": {"lang": "js", "task": "adapter.run_job", "id": task_id},
        "body": [[job], kwargs, EMBED],
    }


def publish_raw(url: str, message: dict[str, Any]) -> None:
    """Publish ``message`` with kombu alone, as a producer in any language would over AMQP."""
    name = message["routingKey"]
    exchange = Exchange(name, "direct")  # type: ignore[no-untyped-call]
    with Connection(url) as connection:  # type: ignore[no-untyped-call]
        Producer(connection.default_channel).publish(  # type: ignore[no-untyped-call]
            json.dumps(message["body"]),
            exchange=exchange,
            routing_key=name,
            content_type=message["contentType"],
            content_encoding=message["contentEncoding"],
            headers=message["headers"],
            declare=[Queue(name, exchange, routing_key=name)],  # type: ignore[no-untyped-call]
            delivery_mode=2,
        )


def test_a_raw_kombu_message_following_the_schema_runs_and_one_breaking_it_is_dead_lettered(
    producer: CeleryJobQueueStrategy,
    make_worker: Callable[..., WorkerProcess],
    broker_url: str,
) -> None:
    queue = unique_queue("raw")
    good_id, bad_id = f"raw-{uuid.uuid4()}", f"raw-{uuid.uuid4()}"
    good = hand_built(queue, good_id, {"queueName": queue, "data": {"n": 7}, "retries": 1}, {})
    bad = hand_built(queue, bad_id, {"queueName": queue}, {"unexpected": True})
    validator = jsonschema.Draft202012Validator(job_message_schema())
    validator.validate(good)
    assert not validator.is_valid(bad)
    worker = make_worker(f"{queue}=echo", "-P", "threads", "-c", "2")
    try:
        worker.start()
        publish_raw(broker_url, good)
        publish_raw(broker_url, bad)
        job = completed(producer, good_id)
        letter = dead_letter_of(producer, bad_id)
    finally:
        worker.stop()
        delete_queues(producer, queue)
    assert (job.id, job.retries, job.result["data"]) == (good_id, 1, {"n": 7})
    assert "no keyword arguments" in letter.reason
    assert producer.find_one(bad_id) is None
