"""The Celery task that runs every job: it translates between Celery and ``adapter.lifecycle``.

One message is one attempt. The lifecycle claims the job, runs its process and records the
outcome; this module only says it in Celery's terms: a completed job returns its result (Celery's
SUCCESS); a failed attempt with retries left becomes a Celery retry (a new message, same task
id, the same short ``argsrepr``) after the backoff; the last failure is raised, so Celery and
Flower show it as a failure; an attempt on a cancelled job is announced revoked, as Celery's
``revoke`` does; a hard time limit is a failed attempt; a store that cannot be reached hands
the message back. What a result backend
then holds is ``adapter.celery.results``'. Messages are acknowledged late: a worker that dies
mid-job leaves its message to be delivered again.
"""

from __future__ import annotations

import logging
from typing import Any, NoReturn

from billiard.einfo import ExceptionWithTraceback
from celery import Celery, Task
from celery.exceptions import Ignore, Reject
from celery.worker import state as worker_state
from celery.worker.request import Request

from adapter.celery.admission import Admission, refusal
from adapter.celery.envelope import (
    PROCESS_HEADER,
    QUEUE_HEADER,
    TASK_NAME,
    TIMEOUT_FIELD,
    TIMEOUT_HEADER,
    args_repr,
    job_args,
    job_of,
    retry_headers,
)
from adapter.celery.gate import MustWait, hand_back
from adapter.celery.poison import DeadLetterRecorder
from adapter.celery.registry import ProcessRegistry
from adapter.celery.results import (
    CANCELLED_REASON,
    CancelledAttempt,
    ResultsBesideOutcomes,
    progress_reporter,
    written_once,
)
from adapter.celery.watchdog import killed_for_timeout, record_stopped
from adapter.deadlines import Timeouts
from adapter.errors import (
    InvalidJobMessageError,
    JobDataError,
    JobFailedError,
    JobTimeLimitError,
    StoreError,
    WrongQueueError,
)
from adapter.job import Job, JobState
from adapter.lifecycle import Lifecycle, Outcome, OutcomeKind
from adapter.settings import AdapterSettings
from adapter.tracing import consumer_span

logger = logging.getLogger(__name__)

#: Wait before a job is offered again when the store could not be reached, in seconds.
STORE_RETRY_DELAY_S = 5.0


def register_task(
    app: Celery,
    registry: ProcessRegistry,
    lifecycle: Lifecycle,
    recorder: DeadLetterRecorder,
    admission: Admission,
    timeouts: Timeouts,
) -> Task:
    """Register ``adapter.run_job`` on ``app`` and return it.

    ``admission`` sees each message in the consumer first; ``recorder`` takes what the pool
    refuses; ``timeouts`` gives each attempt its timeout.
    """

    class JobRequest(Request):  # type: ignore[misc]
        """A job's request: a hard time limit and a cancelled attempt in the job's terms.

        Which process runs the job is told to the pool by ``admission`` (``PROCESS_HEADER``).
        """

        def on_timeout(self, soft: bool, timeout: float) -> None:
            """A hard time limit is a failed attempt, retried while retries remain.

            Celery kills the pool process and acknowledges the message; without this the job
            would stay RUNNING until the reaper counted it as a lost worker's.
            """
            if not soft and not worker_state.should_terminate:
                err = JobTimeLimitError(f"stopped by the hard time limit ({timeout:g}s)")
                record_stopped(
                    self.task, lifecycle, self.id, err, claim_waiting=True,
                    job_timeout=self._request_dict.get(TIMEOUT_HEADER),
                )  # fmt: skip
            super().on_timeout(soft, timeout)

        def on_failure(self, exc_info: Any, *args: Any, **kwargs: Any) -> Any:
            """Announce a cancelled job's attempt revoked, as Celery's ``revoke`` does.

            The event, the result and the signal of a revoke, instead of an ignored task that
            Flower would show STARTED for ever.
            """
            exc = exc_info.exception
            if isinstance(exc, ExceptionWithTraceback):  # as a prefork child sends it
                exc = exc.exc
            if isinstance(exc, CancelledAttempt) and not self._already_revoked:
                self._announce_revoked(CANCELLED_REASON, False, None, False)
                return None
            if killed_for_timeout(self, exc):  # recorded and acknowledged by the watchdog
                worker_state.task_ready(self)
                return None
            return super().on_failure(exc_info, *args, **kwargs)

    results = ResultsBesideOutcomes(lifecycle.store)

    def run_job(task: Task, wire_job: Any = None) -> Any:
        request = task.request  # an attempt's span (if tracing is on), child of its add's
        with consumer_span(str(request.id), getattr(request, QUEUE_HEADER, None), request):
            return _run(task, wire_job, registry, lifecycle, recorder, results)

    class JobTask(app.Task):  # type: ignore[misc]
        """The app's task class, writing results as ``adapter.celery.results.written_once``."""

        @property
        def backend(self) -> Any:
            return written_once(self._backend or self.app.backend)

        @backend.setter
        def backend(self, value: Any) -> None:
            self._backend = value

    return app.task(
        base=JobTask,
        name=TASK_NAME,
        shared=False,  # bound to this app's registry and store, never to another app
        bind=True,
        # Delivery as jobs need it, on this task only: the app's other tasks keep their own.
        acks_late=True,
        reject_on_worker_lost=True,
        # Results follow the app (written with a result_backend, nothing without one), unless
        # adapter_job_results is off.
        ignore_result=not AdapterSettings.from_conf(app.conf).job_results,
        serializer="json",
        max_retries=None,
        Request=JobRequest,
        Strategy=staticmethod(admission.strategy()),  # a class attribute: no binding
    )(run_job)


def _run(
    task: Task,
    wire_job: Any,
    registry: ProcessRegistry,
    lifecycle: Lifecycle,
    recorder: DeadLetterRecorder,
    results: ResultsBesideOutcomes,
) -> Any:
    try:
        job = job_of(wire_job, str(task.request.id))
    except InvalidJobMessageError as err:  # the consumer checked all but the job (admission.py)
        _refuse(task, recorder, wire_job, str(err))
    reason = refusal(job, task.request.delivery_info)
    if reason is not None:
        _refuse(task, recorder, wire_job, reason)
    process = registry.resolve(job.queue_name, getattr(task.request, PROCESS_HEADER, None))
    if process is None:  # stopped since the consumer looked: the consumer no longer takes it
        logger.info("job %s: queue %r is not run here; handing it back", job.id, job.queue_name)
        raise Reject(f"queue {job.queue_name!r} is not started here", requeue=True)
    try:
        claimed = lifecycle.claim(job)
    except MustWait as waiting:  # a paused or limited queue (adapter.celery.gate)
        raise hand_back(task, job, waiting) from None
    except WrongQueueError as err:
        _refuse(task, recorder, wire_job, str(err))
    except StoreError as err:
        logger.warning("job %s: %s; offering it again in %ss", job.id, err, STORE_RETRY_DELAY_S)
        raise task.retry(countdown=STORE_RETRY_DELAY_S, exc=err) from err
    if claimed is None:
        raise _not_run(lifecycle, job)
    claimed.on("progress", progress_reporter(task))
    try:
        outcome = lifecycle.attempt(
            claimed,
            process,
            getattr(task.request, TIMEOUT_FIELD, None),
            write=results.write_for(task),
        )
    except StoreError as err:
        # Hand the message back rather than acknowledge a job whose outcome is unrecorded:
        # it runs again (at least once) instead of staying RUNNING for ever.
        logger.error("job %s: could not record its outcome: %s; handing it back", job.id, err)
        raise Reject(f"could not record the outcome of job {job.id}: {err}", requeue=True) from err
    return _tell_celery(task, lifecycle, outcome)


def _refuse(task: Task, recorder: DeadLetterRecorder, wire_job: Any, reason: str) -> NoReturn:
    """Dead-letter the message being run, with ``reason``, and reject it for good."""
    recorder.take_request(task.app, task.request, wire_job, reason)
    raise Reject(reason, requeue=False)


def _tell_celery(task: Task, lifecycle: Lifecycle, outcome: Outcome) -> Any:
    """Say ``outcome`` in Celery's terms: the result, a retry, a failure, or a revoke."""
    job, err = outcome.job, outcome.error
    if job is None:
        return None
    if outcome.kind == OutcomeKind.RETRY:
        raise task.retry(
            args=job_args(job),
            countdown=outcome.retry_in_s,
            exc=err,
            **args_repr(job),
            **retry_headers(task.request),
        ) from err
    if outcome.kind == OutcomeKind.FAILED:
        raise _failure(job) from (None if isinstance(err, JobDataError) else err)
    if outcome.kind == OutcomeKind.SETTLED_ELSEWHERE:
        raise _not_run(lifecycle, job)
    return job.result


def _not_run(lifecycle: Lifecycle, job: Job) -> Exception:
    """Return what ends a message whose job was not claimed, or settled elsewhere meanwhile.

    A cancelled job is revoked; a failed one a failure; else (a duplicate of a job running
    or done elsewhere) the message is acknowledged and no result written over the real one.
    """
    try:
        stored = lifecycle.store.get(job.id or "")
    except StoreError:
        stored = None  # the job as this attempt knows it
    state = (stored or job).state
    ending: Exception
    if state == JobState.CANCELLED:
        ending = CancelledAttempt(f"job {job.id} was cancelled")
    elif state == JobState.FAILED and stored is not None:
        ending = _failure(stored)
    else:
        ending = Ignore(f"job {job.id} is {state}: this delivery is not run")
    return ending


def _failure(job: Job) -> JobFailedError:
    return JobFailedError(
        f"job {job.id} on {job.queue_name!r} failed after {job.attempts} attempt(s): {job.error}"
    )
