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

A job's task writes its results without the read Celery makes before each write (a round
trip per job on Redis; ``written_once``): Celery reads to keep a stored SUCCESS from being
overwritten by a lost worker's duplicate, and a job's task only writes once the job store's
settled guard accepted the attempt's outcome (a duplicate delivery of a settled job writes
nothing, or the same settled state). What is written is Celery's own meta, byte for byte.
"""

from __future__ import annotations

import logging
import time
import weakref
from collections.abc import Callable
from typing import Any

from celery import Celery, Task
from celery.backends.base import BaseKeyValueStoreBackend, DisabledBackend
from celery.exceptions import BackendStoreError, Ignore

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


#: The ``written_once`` form of each backend object, while the backend lives.
_WRITTEN_ONCE: weakref.WeakKeyDictionary[Any, Any] = weakref.WeakKeyDictionary()
#: The ``written_once`` subclass of each key-value backend class.
_WRITTEN_ONCE_CLASSES: dict[type, type] = {}


def written_once(backend: Any) -> Any:
    """Return ``backend`` writing each result without first reading the stored one.

    Only for a key-value backend (Redis, Memcached, ...) whose ``_store_result`` is Celery's
    own: the returned object is that backend (it shares its state) with that read left out.
    Any other backend is returned as it is. For the job task only (module docstring).
    """
    kind = type(backend)
    if not isinstance(backend, BaseKeyValueStoreBackend) or (
        kind._store_result is not BaseKeyValueStoreBackend._store_result
    ):
        return backend
    found = _WRITTEN_ONCE.get(backend)
    if found is None:
        subclass = _WRITTEN_ONCE_CLASSES.get(kind)
        if subclass is None:
            subclass = type(kind.__name__, (kind,), {"_store_result": _store_result_unread})
            _WRITTEN_ONCE_CLASSES[kind] = subclass
        found = object.__new__(subclass)
        found.__dict__ = backend.__dict__  # the same backend: connections, pending results
        _WRITTEN_ONCE[backend] = found
    return found


def _store_result_unread(
    self: Any,
    task_id: str,
    result: Any,
    state: str,
    traceback: Any = None,
    request: Any = None,
    **kwargs: Any,
) -> Any:
    """Celery's ``BaseKeyValueStoreBackend._store_result`` without its read of the stored one."""
    meta = self._get_result_meta(result=result, state=state, traceback=traceback, request=request)
    meta["task_id"] = str(task_id)
    try:
        self._set_with_state(self.get_key_for_task(task_id), self.encode(meta), state)
    except BackendStoreError as err:
        raise BackendStoreError(str(err), state=state, task_id=task_id) from err
    return result
