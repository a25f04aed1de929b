"""A job's priority (0-9, higher first) as each broker's message priority.

- RabbitMQ (``amqp``): the AMQP priority, the same number; a queue orders by it only when it
  was declared with ``x-max-priority``: the job queues ``adapter_priority_queues`` names (or
  all, ``*``) are, by producers and workers alike. RabbitMQ refuses to declare an existing
  queue with other arguments (PRECONDITION_FAILED): delete the queue (its waiting messages go)
  before naming it there. Ten levels.
- Redis: the same number; kombu keeps one list per priority step, and the adapter's Redis
  transport (``adapter.celery.redis_transport``) reads the highest step first (stock kombu
  reads the lowest first: a worker without the adapter's transport would run them in reverse).
  Priority 0 stays in the queue's own list. With kombu's default ``priority_steps`` [0, 3, 6,
  9] that is four levels: 9, 6-8, 3-5 and 0-2; ``broker_transport_options["priority_steps"] =
  list(range(10))`` gives ten.
- ``filesystem://`` and ``memory://``: no priority; messages go first in, first out.
"""

from __future__ import annotations

from typing import Any

from celery import Celery

from adapter.celery.routing import celery_queue
from adapter.job import MAX_PRIORITY
from adapter.settings import PRIORITY_QUEUES


def broker_priority(driver_type: str, priority: int) -> int | None:
    """Return the message priority of a job's ``priority`` on a transport, or None (none)."""
    if driver_type in ("amqp", "redis"):
        return priority or None  # 0 is what no priority means: the message apply_async sends
    return None


def queue_options(conf: Any, queue_name: str) -> dict[str, Any]:
    """Return the declaration options of ``queue_name``'s celery queue: with x-max-priority
    when ``adapter_priority_queues`` names it (or is ``*``), else none."""
    wanted = PRIORITY_QUEUES.read(conf)
    if queue_name in wanted or "*" in wanted:
        return {"queue_arguments": {"x-max-priority": MAX_PRIORITY}}
    return {}


def declare_job_queue(app: Celery, queue_name: str) -> None:
    """Add the celery queue of ``queue_name`` to ``app.amqp.queues`` as the workers declare it
    (``adapter.celery.consuming``), with ``queue_options``; once per queue and app."""
    name = celery_queue(queue_name)
    if name not in app.amqp.queues:
        app.amqp.queues.add(
            name,
            exchange=name,
            exchange_type="direct",
            routing_key=name,
            **queue_options(app.conf, queue_name),
        )
