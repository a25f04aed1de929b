"""Shared pieces of the benchmark: broker URLs, the app factory, payloads and queue hygiene.

Both sides of every comparison use one app built by ``make_app`` (``celeryconfig.py`` plus the
broker chosen here), so they share prefetch 1, JSON and the producer pool; the raw task is
acknowledged late as the adapter's task is (both set it per task). The
celery worker imports ``bench.workers``, which builds its app with the same function from the
environment variables named below.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import redis
from celery import Celery

from adapter.settings import BROKER_URL, RESULT_BACKEND, STORE_URL

#: Broker URL of each benchmark broker (Redis db 12 is the benchmarks' database).
BROKER_URLS = {
    "redis": "redis://127.0.0.1:6379/12",
    "amqp": "amqp://guest:guest@127.0.0.1:5672//",
}
#: Result backend of the raw no-op task (and where its result keys are counted).
RESULT_URL = "redis://127.0.0.1:6379/12"
#: Name of the raw Celery no-op task.
RAW_TASK_NAME = "bench.noop"
#: The raw no-op task with Celery's default acknowledgement (early), for the batch comparison.
RAW_DEFAULT_TASK_NAME = "bench.noop_default"
#: Prefix of the Redis keys the result backend writes, one per task id.
RESULT_KEY_PREFIX = "celery-task-meta-"

#: Environment variables the worker module reads (the first two are celeryconfig's own).
ENV_BROKER = BROKER_URL.env[0]
ENV_STORE = STORE_URL.env[0]
ENV_RESULT = "BENCH_RESULT_URL"
#: Queue name the worker starts with the adapter; unset for a raw-only worker.
ENV_ADAPTER_QUEUE = "BENCH_ADAPTER_QUEUE"
#: How many queues the worker starts (``<queue>-0`` ...), for ``bench/many_queues.py``.
ENV_QUEUE_COUNT = "BENCH_QUEUE_COUNT"
#: Batch size the worker starts the adapter queue with (``start(..., batch=N)``), if set.
ENV_BATCH = "BENCH_BATCH"
#: Set by ``bench/profile_drain.py``: pool children turn off the profiler they inherit.
ENV_PROFILING = "BENCH_PROFILING"
#: File the worker writes the wall-clock time of ``worker_ready`` to.
ENV_READY_FILE = "BENCH_READY_FILE"


@dataclass(frozen=True)
class RunNames:
    """The unique names one benchmark run uses on one broker."""

    tag: str

    @property
    def queue_name(self) -> str:
        """The adapter's queue name (its celery queue is ``jobs.<queue_name>``)."""
        return f"bench-{self.tag}"

    @property
    def adapter_celery_queue(self) -> str:
        """The celery queue that carries the adapter's jobs."""
        return f"jobs.{self.queue_name}"

    @property
    def raw_queue(self) -> str:
        """The celery queue of the raw tasks."""
        return f"bench-raw-{self.tag}"

    @property
    def batch_queue_name(self) -> str:
        """The adapter's high-throughput (batch) queue name."""
        return f"bench-batch-{self.tag}"

    @property
    def raw_default_queue(self) -> str:
        """The celery queue of the raw tasks run with Celery's default settings."""
        return f"bench-raw-default-{self.tag}"

    @property
    def warm_queue_name(self) -> str:
        """The adapter queue name used to warm up connections before timing."""
        return f"bench-warm-{self.tag}"

    @property
    def raw_warm_queue(self) -> str:
        """The celery queue used to warm up the raw side."""
        return f"bench-raw-warm-{self.tag}"

    def all_celery_queues(self) -> list[str]:
        """Every celery queue this run publishes to."""
        return [
            self.adapter_celery_queue,
            self.raw_queue,
            f"jobs.{self.batch_queue_name}",
            self.raw_default_queue,
            f"jobs.{self.warm_queue_name}",
            self.raw_warm_queue,
        ]


def new_run_names() -> RunNames:
    """Return names no other run uses."""
    return RunNames(uuid.uuid4().hex[:10])


def make_app(broker_url: str, store_url: str, result_url: str | None = None) -> Celery:
    """Build the benchmark app: ``celeryconfig`` with the given broker, store and results."""
    app = Celery("bench")
    app.config_from_object("celeryconfig")
    settings: dict[str, Any] = {BROKER_URL.key: broker_url, STORE_URL.key: store_url}
    if result_url:
        settings[RESULT_BACKEND.key] = result_url
    app.conf.update(settings)
    return app


def job_data(index: int) -> dict[str, Any]:
    """Return the data of job ``index``: a small order-like object (about 200 bytes)."""
    return {
        "orderId": index,
        "email": f"customer-{index}@example.com",
        "lines": [{"sku": f"SKU-{index % 97:04d}", "quantity": 1 + index % 3}] * 2,
        "note": "benchmark payload",
    }


def purge_queues(app: Celery, queues: Iterable[str], *, delete: bool = False) -> int:
    """Declare and purge each celery queue (then delete it and its exchange if asked).

    Returns how many messages were purged.
    """
    purged = 0
    with app.connection_for_write() as conn:
        channel = conn.default_channel
        for name in queues:
            queue = app.amqp.queues[name].bind(channel)
            queue.declare()
            purged += queue.purge() or 0
            if delete:
                queue.delete()
                queue.exchange.bind(channel).delete()
    return purged


def queue_size(app: Celery, name: str) -> int:
    """Return how many ready messages the celery queue ``name`` holds."""
    with app.connection_for_write() as conn:
        queue = app.amqp.queues[name].bind(conn.default_channel)
        return int(queue.queue_declare(passive=True).message_count)


def result_keys(task_ids: list[str]) -> list[str]:
    """Return the result-backend keys of ``task_ids``."""
    return [RESULT_KEY_PREFIX + task_id for task_id in task_ids]


def delete_result_keys(client: redis.Redis, task_ids: list[str]) -> None:
    """Delete the result keys of ``task_ids`` (only ours: the database is shared)."""
    keys = result_keys(task_ids)
    for start in range(0, len(keys), 1000):
        client.delete(*keys[start : start + 1000])


#: Redis transport keys shared by every Celery user of a database (see kombu.transport.redis).
_UNACKED, _UNACKED_INDEX = "unacked", "unacked_index"
_PIDBOX_TABLE, _BINDING_DEADLINES = "_kombu.binding.celery.pidbox", "_kombu.binding_deadlines"
#: A binding member is "routing key, pattern, queue" joined by this separator (empty for fanout).
_BINDING_SEP = "\x06\x16"


def clean_redis_broker(
    client: redis.Redis, queues: Iterable[str], hostnames: Iterable[str]
) -> None:
    """Remove what this run's workers left in the shared Redis transport keys.

    Unacknowledged messages of our queues (left if a worker had to be killed), the pidbox
    bindings of our worker hostnames, and the pidbox deadline once no worker is bound.
    """
    ours = set(queues)
    for tag, raw in client.hscan_iter(_UNACKED):
        _message, exchange, routing_key = json.loads(raw)
        if routing_key in ours or exchange in ours:
            client.hdel(_UNACKED, tag)
            client.zrem(_UNACKED_INDEX, tag)
    for hostname in hostnames:
        client.srem(_PIDBOX_TABLE, f"{_BINDING_SEP * 2}{hostname}.celery.pidbox")
    if not client.exists(_PIDBOX_TABLE):
        client.zrem(_BINDING_DEADLINES, "celery.pidbox")
