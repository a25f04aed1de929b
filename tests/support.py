"""Helpers shared by the tests: waiting for observable outcomes, unique names, server cleanup."""

from __future__ import annotations

import contextlib
import os
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Final, TypeVar

import redis
import sqlalchemy as sa
from celery import Celery
from kombu.entity import Queue
from kombu.message import Message

from adapter import CeleryJobQueueStrategy, InspectableJobQueueStrategy, Job
from adapter.celery.envelope import TASK_NAME, build, job_args
from adapter.celery.routing import celery_queue

T = TypeVar("T")

#: Longest wait for a job outcome; generous because the machines are shared and noisy.
WAIT_TIMEOUT_S = 60.0

#: Names this test process alone uses on the shared servers: the run's id (one per ``pytest``
#: command, shared by its xdist workers) and the xdist worker (``gw0``..., ``main`` without
#: xdist). Exchanges, key prefixes and schemas built from it never meet another run's.
PROCESS_TAG: Final = (
    f"{os.environ.get('PYTEST_XDIST_TESTRUNUID', uuid.uuid4().hex)[:8]}"
    f"-{os.environ.get('PYTEST_XDIST_WORKER', 'main')}"
)


def wait_for(
    probe: Callable[[], T | None],
    what: str,
    timeout: float = WAIT_TIMEOUT_S,
    every: float = 0.05,
    report: Callable[[], object] | None = None,
) -> T:
    """Poll ``probe`` until it returns something truthy and return it; fail naming ``what``.

    ``report`` is called on a time-out and its answer added to the failure, to say what was
    seen instead.
    """
    deadline = time.monotonic() + timeout
    last: T | None = None
    while time.monotonic() < deadline:
        last = probe()
        if last:
            return last
        time.sleep(every)
    seen = f"; {report()}" if report is not None else ""
    raise AssertionError(
        f"timed out after {timeout:.0f}s waiting for {what}; last saw {last!r}{seen}"
    )


def unique_queue(label: str) -> str:
    """Return a queue name no other test (or test run) uses."""
    return f"t-{label}-{uuid.uuid4().hex[:10]}"


def wait_job(
    strategy: InspectableJobQueueStrategy, job_id: str, condition: Callable[[Job], bool], what: str
) -> Job:
    """Wait until the stored job ``job_id`` meets ``condition`` and return it."""

    def probe() -> Job | None:
        found = strategy.find_one(job_id)
        return found if found is not None and condition(found) else None

    return wait_for(probe, f"job {job_id}: {what}")


def wait_settled(strategy: InspectableJobQueueStrategy, job: Job) -> Job:
    """Wait until ``job`` is settled in the store and return it."""
    return wait_job(strategy, job.id or "", lambda found: found.is_settled, "settled")


def delete_queues(strategy: CeleryJobQueueStrategy, *queue_names: str) -> None:
    """Delete the broker queues that carried ``queue_names``' jobs (already gone is fine)."""
    with strategy.app.connection_for_write() as connection:
        for name in queue_names:
            with contextlib.suppress(Exception):
                connection.default_channel.queue_delete(celery_queue(name))


def messages_waiting(strategy: CeleryJobQueueStrategy, queue_name: str) -> int:
    """Return how many messages wait in the celery queue of ``queue_name`` (0 if none exists)."""
    with strategy.app.connection_for_write() as connection:
        try:
            declared = connection.default_channel.queue_declare(
                celery_queue(queue_name), passive=True
            )
        except Exception:
            return 0
        return int(declared.message_count)


def delete_redis_keys(url: str, prefix: str) -> int:
    """Delete every Redis key under ``prefix`` (SCAN and DEL, never a flush); return how many."""
    client = redis.Redis.from_url(url)
    deleted = 0
    try:
        batch: list[bytes] = []
        for key in client.scan_iter(match=f"{prefix}:*", count=1000):
            batch.append(key)
            if len(batch) == 1000:
                deleted += int(client.delete(*batch))
                batch = []
        if batch:
            deleted += int(client.delete(*batch))
    finally:
        client.close()
    return deleted


@contextlib.contextmanager
def postgres_schema(postgres_url: str, label: str) -> Iterator[str]:
    """Create a fresh PostgreSQL schema, yield a URL whose tables go there, then drop it all."""
    schema = f"adapter_{label}_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(postgres_url)
    try:
        with admin.begin() as conn:
            conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
        url = sa.make_url(postgres_url).update_query_dict({"options": f"-csearch_path={schema}"})
        yield url.render_as_string(hide_password=False)
        with admin.begin() as conn:
            conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
    finally:
        admin.dispose()


def sent_and_received(app: Celery, job: Job, timeout: float | None = None) -> Message:
    """Build ``job``'s message, send it as ``JobPublisher`` does and take it off its queue."""
    name = celery_queue(job.queue_name)
    with app.producer_or_acquire() as producer:
        app.amqp.send_task_message(
            producer, TASK_NAME, build(app.amqp, job, job_args(job), timeout=timeout), queue=name
        )
    with app.connection_for_read() as connection:
        message = Queue(name, routing_key=name)(connection).get(no_ack=True)  # type: ignore[no-untyped-call]
    assert isinstance(message, Message)
    return message


@contextlib.contextmanager
def memory_strategy(name: str) -> Iterator[CeleryJobQueueStrategy]:
    """A strategy on kombu's in-memory broker and a fresh memory store: no server."""
    app = Celery(name, broker="memory://", set_as_current=False)
    made = CeleryJobQueueStrategy(app, store=f"memory://{uuid.uuid4().hex}")
    try:
        yield made
    finally:
        made.destroy()
        app.close()
