"""A worker that starts many queues consumes every one of them, the last batch included.

The consumer bootstep adds started queues in batches of ``BATCH_SIZE``, one event-loop
callback each (``adapter.celery.consuming``). Real ``celery worker`` subprocesses on Redis and
RabbitMQ start a little over two batches of queues; a job on the last one runs, and
``celery inspect active_queues`` lists them all; on RabbitMQ a queue the broker refuses to
declare does not stop the others. Not timed: ``bench/many_queues.py`` measures.
Every queue and exchange declared here is deleted afterwards (the servers are shared).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable

import pytest
import redis

from adapter import CeleryJobQueueStrategy, Job, JobState
from adapter.celery.consuming import BATCH_SIZE
from adapter.celery.routing import celery_queue
from tests.integration.conftest import SERVER_BROKERS, WorkerProcess
from tests.support import unique_queue, wait_for, wait_settled


def delete_queues_and_exchanges(
    strategy: CeleryJobQueueStrategy, broker_url: str, label: str, names: list[str]
) -> None:
    """Delete what the worker declared for ``names`` (all named after ``label``, unique).

    On Redis a queue's binding is known to the channel that declared it only, so the keys are
    deleted by name: every key holding ``label``.
    """
    if broker_url.startswith("redis"):
        client = redis.Redis.from_url(broker_url)
        try:
            keys = list(client.scan_iter(match=f"*{label}*", count=1000))
            for start in range(0, len(keys), 1000):
                client.delete(*keys[start : start + 1000])
        finally:
            client.close()
        return
    with strategy.app.connection_for_write() as connection:
        channel = connection.default_channel
        for name in names:
            with contextlib.suppress(Exception):
                channel.queue_delete(celery_queue(name))
            with contextlib.suppress(Exception):
                channel.exchange_delete(celery_queue(name))


@SERVER_BROKERS
def test_a_worker_with_many_started_queues_consumes_all_of_them_and_runs_a_job_on_the_last(
    control: CeleryJobQueueStrategy, make_worker: Callable[..., WorkerProcess], broker_url: str
) -> None:
    label = unique_queue("many")
    names = [f"{label}-{index}" for index in range(2 * BATCH_SIZE + 1)]
    worker = make_worker(",".join(f"{name}=echo" for name in names))
    try:
        worker.start()
        last = wait_settled(control, control.add(Job(queue_name=names[-1], data="last")))
        first = wait_settled(control, control.add(Job(queue_name=names[0], data="first")))
        consumed = wait_for(
            lambda: set(names) <= set(control.consumers(timeout=5.0)) or None,
            "the worker to list every started queue in active_queues",
        )
    finally:
        worker.stop()
        delete_queues_and_exchanges(control, broker_url, label, names)
    assert (last.state, last.result["data"]) == (JobState.COMPLETED, "last")
    assert (first.state, first.result["data"]) == (JobState.COMPLETED, "first")
    assert consumed


@pytest.mark.parametrize("broker_url", ["rabbitmq"], indirect=True)
def test_a_queue_the_broker_refuses_to_declare_does_not_stop_the_others_of_its_batch(
    control: CeleryJobQueueStrategy, make_worker: Callable[..., WorkerProcess], broker_url: str
) -> None:
    label = unique_queue("refused")  # RabbitMQ refuses a queue declared with other arguments
    names = [f"{label}-{index}" for index in range(3)]
    worker = make_worker(",".join(f"{name}=echo" for name in names))
    try:
        with control.app.connection_for_write() as connection:
            connection.default_channel.queue_declare(
                celery_queue(names[1]),
                durable=True,
                auto_delete=False,
                arguments={"x-max-length": 10},
            )
        worker.start()
        done = [
            wait_settled(control, control.add(Job(queue_name=name, data=name)))
            for name in (names[0], names[2])
        ]
    finally:
        worker.stop()
        delete_queues_and_exchanges(control, broker_url, label, names)
    assert [job.state for job in done] == [JobState.COMPLETED] * 2
