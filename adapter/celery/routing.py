"""Names on the wire: the task name, the message headers, and each job's celery queue.

These are the wire contract between producers and workers; they never derive from module
paths, so moving a file changes nothing a running deployment sees.
"""

from __future__ import annotations

from adapter import settings

#: The one Celery task that runs every job.
TASK_NAME = "adapter.run_job"
#: Prefix of the celery queue that carries a queue's jobs ("send-email" -> "jobs.send-email").
QUEUE_PREFIX = "jobs."
#: Message header naming the job's queue, set at ``add``.
QUEUE_HEADER = "adapter_queue"
#: Request field a worker parent sets to tell the pool which process runs the job.
PROCESS_HEADER = "adapter_process"


def celery_queue(queue_name: str) -> str:
    """Return the celery queue that carries the jobs of ``queue_name``."""
    return QUEUE_PREFIX + queue_name


def queue_name_of(celery_queue_name: str) -> str | None:
    """Return the queue name a celery queue carries, or None if it is not a job queue."""
    if celery_queue_name.startswith(QUEUE_PREFIX):
        return celery_queue_name[len(QUEUE_PREFIX) :]
    return None


#: The dead-letter queue's setting and default, from ``adapter.settings`` (poison.py reads them).
DEAD_LETTER_QUEUE_SETTING = settings.DEAD_LETTER_QUEUE.key
DEAD_LETTER_QUEUE = settings.DEAD_LETTER_QUEUE.default
#: Header added to a dead-lettered message: why it was not run.
DEAD_LETTER_REASON_HEADER = "x-adapter-dead-letter-reason"
