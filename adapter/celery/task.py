"""The Celery task that runs every job, and the request class that routes it to its process.

One message is one attempt. The task claims the job in the store (RUNNING, attempts + 1),
runs the process, and records the outcome. A failed attempt with retries left becomes a
Celery retry (a new message, same task id) after the backoff; the last failure is recorded
as FAILED and raised, so Celery and Flower show it as a failure. Messages are acknowledged
late: a worker that dies mid-job leaves its message to be delivered again.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from celery import Celery, Task
from celery.exceptions import Reject
from celery.worker.request import Request

from adapter.backoff import BackoffStrategy
from adapter.celery.envelope import PROCESS_HEADER, TASK_NAME, job_args, message_queue_name
from adapter.celery.poison import DeadLetterOffice, guarded_strategy
from adapter.celery.reaper import Liveness
from adapter.celery.registry import ProcessRegistry
from adapter.data import ensure_json
from adapter.errors import InvalidJobMessageError, JobDataError, JobFailedError, StoreError
from adapter.job import Job, JobState
from adapter.runner import call_process
from adapter.running import RunningJobs
from adapter.store.base import JobStore

logger = logging.getLogger(__name__)

#: Pauses between tries to record an outcome in a busy or unreachable store, in seconds.
RECORD_RETRY_DELAYS_S = (0.2, 0.5, 1.0, 2.0, 4.0)
#: Wait before a job is offered again when the store could not be reached, in seconds.
STORE_RETRY_DELAY_S = 5.0


@dataclass
class JobRunner:
    """What running a job needs: the process registry, the store, backoff, the running jobs."""

    registry: ProcessRegistry
    store: Callable[[], JobStore]
    backoff: BackoffStrategy
    running: RunningJobs
    liveness: Liveness


def register_task(app: Celery, runner: JobRunner, office: DeadLetterOffice) -> Task:
    """Register ``adapter.run_job`` on ``app`` and return it; ``office`` takes poison."""
    registry = runner.registry

    class JobRequest(Request):  # type: ignore[misc]
        """Tells the pool which process runs the job, as this (parent) process knows it.

        Set when the message is received: Celery replaces ``execute_using_pool`` in the
        subclass it builds per task, so ``__init__`` is the hook that always runs here.
        """

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            request = self._request_dict
            queue_name = message_queue_name(request, self.delivery_info)
            request[PROCESS_HEADER] = registry.token_for(queue_name) if queue_name else ""

    def run_job(task: Task, wire_job: Any = None) -> Any:
        return _run(task, wire_job, runner, office)

    return app.task(
        name=TASK_NAME,
        shared=False,  # bound to this app's registry and store, never to another app
        bind=True,
        acks_late=True,
        reject_on_worker_lost=True,
        ignore_result=True,
        max_retries=None,
        Request=JobRequest,
        Strategy=staticmethod(guarded_strategy(office)),  # a class attribute: no binding
    )(run_job)


def _run(task: Task, wire_job: Any, runner: JobRunner, office: DeadLetterOffice) -> Any:
    try:
        job = Job.from_wire(wire_job)
    except InvalidJobMessageError as err:  # the consumer checked all but the job (poison.py)
        office.take_request(task.app, task.request, wire_job, str(err))
        raise Reject(str(err), requeue=False) from err
    process = runner.registry.resolve(job.queue_name, getattr(task.request, PROCESS_HEADER, None))
    if process is None:
        logger.info("job %s: queue %r is not run here; handing it back", job.id, job.queue_name)
        raise Reject(f"queue {job.queue_name!r} is not started here", requeue=True)
    store = runner.store()
    try:
        claimed = store.claim(job, busy_after=runner.liveness.alive_since())
    except StoreError as err:
        logger.warning("job %s: %s; offering it again in %ss", job.id, err, STORE_RETRY_DELAY_S)
        raise task.retry(countdown=STORE_RETRY_DELAY_S, exc=err) from err
    if claimed is None:
        logger.info("job %s is settled or running elsewhere; not running it again", job.id)
        return None
    if runner.liveness.lost_too_often(claimed):
        claimed.fail(
            f"started {claimed.attempts} times without finishing: its worker was lost each "
            f"time; not run again (at most {runner.liveness.max_redeliveries} restarts after "
            "lost workers)"
        )
        logger.error("job %s: %s", claimed.id, claimed.error)
        _record(store, claimed)
        return None
    runner.running.watch(claimed)
    try:
        _attempt(task, claimed, process, store, runner.backoff)
    finally:
        runner.running.unwatch(claimed)
    return None


def _attempt(
    task: Task, job: Job, process: Callable[[Job], Any], store: JobStore, backoff: BackoffStrategy
) -> None:
    job_id = job.id or ""

    def persist_progress(progressed: Job) -> None:
        store.set_progress(job_id, progressed.progress)

    job.on("progress", persist_progress)
    try:
        result = call_process(process, job)
        ensure_json(result, root="result")
    except Exception as err:  # a process may raise anything: it is a failed attempt
        if job.state == JobState.CANCELLED:
            logger.info("job %s stopped after it was cancelled: %s", job_id, err)
            return
        job.fail(err)
        if not _record(store, job):
            return  # settled meanwhile (cancelled): no retry
        if job.state == JobState.RETRYING:
            delay_ms = backoff(job.queue_name, job.attempts, job)
            raise task.retry(
                args=job_args(job), countdown=max(delay_ms, 0) / 1000, exc=err
            ) from err
        raise JobFailedError(
            f"job {job_id} on {job.queue_name!r} failed after {job.attempts} "
            f"attempt(s): {job.error}"
        ) from (None if isinstance(err, JobDataError) else err)
    if job.state == JobState.CANCELLED:
        logger.info("job %s finished after it was cancelled; it stays CANCELLED", job_id)
        return
    job.complete(result)
    _record(store, job)


def _record(store: JobStore, job: Job) -> bool:
    """Write the attempt's outcome; a busy store is retried, never given up on quietly."""
    for delay in RECORD_RETRY_DELAYS_S:
        try:
            written = store.update(job)
            break
        except StoreError as err:
            logger.warning("job %s: recording %s failed (%s); retrying", job.id, job.state, err)
            time.sleep(delay)
    else:
        try:
            written = store.update(job)
        except StoreError as err:
            # Hand the message back rather than acknowledge a job whose outcome is unrecorded:
            # it runs again (at least once) instead of staying RUNNING for ever.
            logger.error("job %s: could not record %s: %s; handing it back", job.id, job.state, err)
            raise Reject(
                f"could not record the outcome of job {job.id}: {err}", requeue=True
            ) from err
    if written:
        return True
    logger.info("job %s was settled elsewhere; its %s outcome is not recorded", job.id, job.state)
    return False
