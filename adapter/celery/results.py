"""Celery's result API for jobs: what ``AsyncResult(job.id)`` and Flower report.

With a result backend on the app (Celery's ``result_backend``), the job task writes, under
the job's id (its task id), what the job store holds:

=============  ===========================================================================
job            ``AsyncResult(job.id)``
=============  ===========================================================================
RUNNING        ``PROGRESS`` with info ``{"progress": n}``, at each ``set_progress``
RETRYING       ``RETRY``
COMPLETED      ``SUCCESS`` with the job's result: ``.get()`` returns it
FAILED         ``FAILURE``: ``JobFailedError`` naming the job's error
CANCELLED      ``REVOKED``: by ``cancel_job``, by Celery's ``revoke``, or when an attempt
               ends on a cancelled job
=============  ===========================================================================

Flower and ``celery events`` hear the same from the worker's events: a cancelled attempt
ends with ``task-revoked``, never ``task-succeeded``. Without a result backend (Celery's
``DisabledBackend``) nothing is written.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from celery import Celery, Task
from celery.backends.base import DisabledBackend
from celery.exceptions import Ignore

from adapter.job import Job
from adapter.running import PROGRESS_WRITE_S
from adapter.settings import AdapterSettings

logger = logging.getLogger(__name__)

#: The custom Celery state of a running job that reported progress.
PROGRESS_STATE = "PROGRESS"
#: The reason Celery records (``TaskRevokedError``) for a cancelled job.
CANCELLED_REASON = "cancelled"


class CancelledAttempt(Ignore):  # type: ignore[misc]
    """Ends an attempt on a cancelled job: the worker reports it revoked, not succeeded.

    Celery's ``Ignore`` (the message is acknowledged, nothing is stored by the pool); the
    worker's request (``adapter.celery.task``) turns it into Celery's own revoke announcement.
    """


def has_result_backend(app: Celery) -> bool:
    """True when jobs of ``app`` write results: a ``result_backend``, ``adapter_job_results``."""
    if isinstance(app.backend, DisabledBackend):
        return False
    return AdapterSettings.from_conf(app.conf).job_results


def progress_reporter(task: Task) -> Callable[[Job], None]:
    """Return a progress listener writing ``PROGRESS`` at most every ``PROGRESS_WRITE_S``.

    The store's pace (``adapter.running``): a burst of ``set_progress`` calls costs the result
    backend a few writes, not one each. Nothing at all without a result backend.
    """
    if task.ignore_result or isinstance(task.app.backend, DisabledBackend):
        return lambda job: None
    last = [-PROGRESS_WRITE_S]

    def report(job: Job) -> None:
        now = time.monotonic()
        if now - last[0] >= PROGRESS_WRITE_S:
            last[0] = now
            _report_progress(task, job)

    return report


def _report_progress(task: Task, job: Job) -> None:
    """Write the running job's progress as state ``PROGRESS`` (with a result backend)."""
    try:
        task.update_state(state=PROGRESS_STATE, meta={"progress": job.progress})
    except Exception as err:  # the backend's errors vary; the job store has the progress
        logger.warning("job %s: could not report progress to the result backend: %s", job.id, err)


def mark_revoked(app: Celery, job_id: str, request: Any = None) -> None:
    """Write ``job_id`` as REVOKED (with a result backend); the job was cancelled."""
    if not has_result_backend(app):
        return
    try:
        app.backend.mark_as_revoked(job_id, reason=CANCELLED_REASON, request=request)
    except Exception as err:  # the backend's errors vary; the job store says CANCELLED
        logger.warning("job %s: could not mark it revoked in the result backend: %s", job_id, err)
