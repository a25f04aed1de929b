"""Where job messages go: each queue name's celery queue, and the dead-letter queue.

These names are part of the wire contract between producers and workers (what a message
holds is ``adapter.celery.envelope``); they never derive from module paths, so moving a file
changes nothing a running deployment sees.
"""

from __future__ import annotations

#: Prefix of the celery queue that carries a queue's jobs ("send-email" -> "jobs.send-email").
QUEUE_PREFIX = "jobs."


def celery_queue(queue_name: str) -> str:
    """Return the celery queue that carries the jobs of ``queue_name``."""
    return QUEUE_PREFIX + queue_name


def queue_name_of(celery_queue_name: str) -> str | None:
    """Return the queue name a celery queue carries, or None if it is not a job queue."""
    if celery_queue_name.startswith(QUEUE_PREFIX):
        return celery_queue_name[len(QUEUE_PREFIX) :]
    return None
