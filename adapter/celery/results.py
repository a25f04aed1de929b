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

Where the result backend is Redis in the job store's own database (``RedisJobStore``), a
completed job's SUCCESS is written in the store's outcome write, the same script
(``ResultsBesideOutcomes``): one round trip instead of two, the result stored exactly when
the outcome is, and Celery's write after the task returns is then left out. A task with
callbacks, a chain, a chord or a group keeps Celery's own order (its result after them).
"""

from __future__ import annotations

import logging
import time
import weakref
from collections.abc import Callable
from typing import Any

from celery import Celery, Task, states
from celery.backends.base import BaseKeyValueStoreBackend, DisabledBackend
from celery.backends.redis import RedisBackend
from celery.exceptions import BackendStoreError, Ignore

from adapter.job import Job, JobState
from adapter.lifecycle import OutcomeWrite
from adapter.running import PROGRESS_WRITE_S
from adapter.settings import AdapterSettings
from adapter.store.base import JobStore
from adapter.store.redis.attempts import KeyWrite
from adapter.store.redis.store import RedisJobStore

logger = logging.getLogger(__name__)

#: The custom Celery state of a running job that reported progress.
PROGRESS_STATE = "PROGRESS"
#: The reason Celery records (``TaskRevokedError``) for a cancelled job.
CANCELLED_REASON = "cancelled"
#: The request field saying its SUCCESS was written with the job's outcome: not again.
RESULT_WRITTEN_FIELD = "adapter_result_written"


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
    if state == states.SUCCESS and getattr(request, RESULT_WRITTEN_FIELD, False):
        return result  # written with the job's outcome (ResultsBesideOutcomes)
    meta = self._get_result_meta(result=result, state=state, traceback=traceback, request=request)
    meta["task_id"] = str(task_id)
    try:
        self._set_with_state(self.get_key_for_task(task_id), self.encode(meta), state)
    except BackendStoreError as err:
        raise BackendStoreError(str(err), state=state, task_id=task_id) from err
    return result


class ResultsBesideOutcomes:
    """Writes a completed job's SUCCESS in the job store's outcome write, where they share a
    Redis database (module docstring)."""

    def __init__(self, store: JobStore) -> None:
        self._store = store if isinstance(store, RedisJobStore) else None
        self._shared: weakref.WeakKeyDictionary[Any, bool] = weakref.WeakKeyDictionary()

    def write_for(self, task: Task) -> OutcomeWrite | None:
        """How the running attempt of ``task`` records its outcome; None: as the store does."""
        store, request = self._store, task.request
        if (
            store is None
            or task.ignore_result
            or request.is_eager
            or getattr(request, "ignore_result", False)
            or request.callbacks
            or request.chain
            or request.chord
            or request.group
        ):
            return None
        backend = task.backend
        shared = self._shared.get(backend)
        if shared is None:
            shared = self._shared[backend] = _shares_database(backend, store)
        if not shared:
            return None

        def write(job: Job) -> bool:
            success = _success_write(backend, request, job)
            if success is None:
                return store.update(job)
            done = store.update_and_set(job, success)
            if done:
                setattr(request, RESULT_WRITTEN_FIELD, True)
            return done

        return write


def _shares_database(backend: Any, store: RedisJobStore) -> bool:
    """True when ``backend`` is Celery's Redis backend, written once, in ``store``'s database."""
    return (
        isinstance(backend, RedisBackend)
        and type(backend)._store_result is _store_result_unread
        and store.same_database(backend.client)
    )


def _success_write(backend: Any, request: Any, job: Job) -> KeyWrite | None:
    """Celery's SUCCESS write of the completed ``job`` (as ``RedisBackend.set`` makes it), or
    None when the job did not complete or Celery would refuse the value."""
    if job.state != JobState.COMPLETED:
        return None
    result = backend.encode_result(job.result, states.SUCCESS)
    meta = backend._get_result_meta(
        result=result, state=states.SUCCESS, traceback=None, request=request
    )
    meta["task_id"] = str(request.id)
    value = backend.encode(meta)
    if isinstance(value, str) and len(value) > backend._MAX_STR_VALUE_SIZE:
        return None  # Celery's own write raises its error
    expires = int(backend.expires) if backend.expires else None
    return KeyWrite(backend.get_key_for_task(request.id), value, expires)
