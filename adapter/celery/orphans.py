"""Redis: messages a dead worker had taken are put back on their queue, within a heartbeat window.

With late acknowledgement a Redis worker leaves every message it took in kombu's ``unacked``
hash until it acknowledges it. When the worker dies, kombu puts the message back only after
``visibility_timeout`` (an hour by default; it must stay longer than the longest task of the
deployment, or Celery runs long tasks twice). The reaper's heartbeats cover the jobs that had
started; this covers the rest: messages of jobs a worker took but never started, and retries
waiting for their countdown in a worker's memory.

Each reaper round, messages of the adapter's job queues (``jobs.*``, never another app's)
unacknowledged for longer than the heartbeat timeout, and not due in the future, go back to
their queue, with kombu's own restore under kombu's own lock. A message whose job is in fact
running on a live worker comes back too; its copy is refused at claim (RUNNING with a fresh
heartbeat, ``JobStore.claim``) and dropped, so a job never runs twice at once because of it.
"""

from __future__ import annotations

import json
import logging
import time
from datetime import datetime
from typing import Any

from celery import Celery
from kombu.transport.redis import Mutex, MutexHeld

from adapter.celery.routing import QUEUE_PREFIX

logger = logging.getLogger(__name__)


def restore_orphaned_messages(app: Celery, older_than_s: float) -> int:
    """Put back job messages unacknowledged for ``older_than_s``; return how many (Redis only)."""
    with app.pool.acquire(block=True) as connection:
        if connection.transport.driver_type != "redis":
            return 0
        channel = connection.default_channel
        qos = channel.qos
        cutoff = time.time() - older_than_s
        restored = 0
        with channel.conn_or_acquire() as client:
            try:
                with Mutex(client, qos.unacked_mutex_key, qos.unacked_mutex_expire):
                    for tag in client.zrangebyscore(qos.unacked_index_key, 0, cutoff):
                        raw = client.hget(qos.unacked_key, tag)
                        if raw is not None and _orphan(raw, cutoff):
                            qos.restore_by_tag(tag, client)
                            restored += 1
            except MutexHeld:
                return 0  # another worker is restoring right now
    if restored:
        logger.warning("put back %d job message(s) taken by a worker that was lost", restored)
    return restored


def _orphan(raw: Any, cutoff: float) -> bool:
    """True for a job-queue message not due after ``cutoff`` (a retry may wait in a worker)."""
    try:
        message, _exchange, routing_key = json.loads(raw)
        eta = (message.get("headers") or {}).get("eta")
        due = datetime.fromisoformat(eta).timestamp() if eta else 0.0
    except (ValueError, TypeError, AttributeError):
        return False  # not a message this module understands: leave it to kombu
    return isinstance(routing_key, str) and routing_key.startswith(QUEUE_PREFIX) and due <= cutoff
