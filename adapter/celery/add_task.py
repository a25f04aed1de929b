"""``adapter.add_job``: the Celery task that adds one job, so Celery beat can schedule jobs.

A shop schedules a job as it schedules any task, by name, in its beat schedule::

    beat_schedule = {
        "nightly-reindex": {
            "task": "adapter.add_job",
            "schedule": crontab(hour=3),
            "args": ["reindex", {"full": True}],  # queue name, data
            "kwargs": {"retries": 2},  # optional: retries, idempotency_key
        }
    }

Each message beat sends is one ``add``: a worker of the app runs the task, which builds the job
and adds it through the strategy (checked, published on ``jobs.<queue name>``, stored), writes
it to the store before it returns, and returns the job's id. The task goes to the app's default
celery queue unless the entry routes it (``"options": {"queue": ...}``). A job that ``add``
refuses (a bad queue name, data too large) fails the task, as Flower shows.
"""

from __future__ import annotations

from typing import Any, Protocol

from celery import Celery, Task

from adapter.job import Job

#: The task that adds a job; fixed here, never derived from a module path.
ADD_TASK_NAME = "adapter.add_job"


class JobAdder(Protocol):
    """What the task needs of the strategy: ``add``, and ``flush`` to store the job now."""

    def add(self, job: Job, *, idempotency_key: str | None = None) -> Job:
        """Publish and record ``job``."""

    def flush(self) -> None:
        """Write the added jobs to the store."""


def register_add_task(app: Celery, adder: JobAdder) -> Task:
    """Register ``adapter.add_job`` on ``app``, adding its jobs through ``adder``."""

    def add_job(
        queue_name: str,
        data: Any = None,
        *,
        retries: int = 0,
        idempotency_key: str | None = None,
    ) -> str:
        job = adder.add(
            Job(queue_name=queue_name, data=data, retries=retries),
            idempotency_key=idempotency_key,
        )
        adder.flush()  # stored before the message is acknowledged
        return str(job.id)

    # shared=False: bound to this app's strategy; the app's own settings otherwise.
    return app.task(name=ADD_TASK_NAME, shared=False, serializer="json")(add_job)
