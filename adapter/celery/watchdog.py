"""Forced stops: the worker's main process stops attempts that outlive a timeout or a cancel.

A running job is first told to stop, cooperatively: at its timeout by the thread that watches
it (``adapter.running``, ``adapter.deadlines``), when cancelled by the same thread's cancel
poll. One watchdog thread per worker main process gives it ``adapter_stop_grace`` seconds
more, then acts on the requests of ``adapter.run_job`` Celery lists as active
(``celery.worker.state.active_requests``; each carries its resolved timeout, and Celery its
start time and pool process):

- **Timeout**: the attempt is recorded as failed with "timed out after N s" (``Lifecycle
  .stopped``: RETRYING and published again after the backoff while retries remain, else
  FAILED), whatever the process does next (a process still running here records nothing more).
- **Cancel** (the store says CANCELLED, polled every ``CANCEL_POLL_INTERVAL_S``): the job is
  CANCELLED already; nothing more is recorded.
- Then, on a prefork pool, the message is acknowledged (never delivered again) and the pool
  child running it is killed (SIGKILL; Celery's ``revoke(terminate=True)`` way for a cancel,
  announced revoked); billiard starts a new child. Both run on the consumer's event loop
  (``hub.call_soon``), where Celery acknowledges. Threads, solo and green pools cannot stop a
  running Python function: there the job was told, its outcome is recorded, and it runs on
  (logged once per attempt).

The store stays the truth: every outcome is written once, through ``adapter.lifecycle``.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Callable
from typing import Any, Protocol

from billiard.exceptions import Terminated
from celery import Task
from celery.worker import state as worker_state

from adapter.celery.envelope import TASK_NAME, TIMEOUT_FIELD, TIMEOUT_HEADER
from adapter.celery.publish import JobPublisher
from adapter.deadlines import Timeouts, timeout_error
from adapter.errors import JobQueueError
from adapter.forksafe import no_fork
from adapter.lifecycle import Lifecycle, OutcomeKind
from adapter.running import CANCEL_POLL_INTERVAL_S

logger = logging.getLogger(__name__)

#: Seconds between two looks at the active requests.
TICK_S = 0.2
#: Attribute the watchdog sets on a request whose pool process it killed for a timeout.
TIMED_OUT_MARK = "adapter_timed_out"


def killed_for_timeout(request: Any, exc: BaseException) -> bool:
    """True when ``exc`` ends ``request`` because the watchdog killed it for a timeout.

    Its outcome is recorded and its message acknowledged: Celery must not announce it revoked
    (its ``task_revoked`` would cancel the job's retry, which has the same id).
    """
    return isinstance(exc, Terminated) and getattr(request, TIMED_OUT_MARK, False)


class Consumers(Protocol):
    """The worker's running consumer (``adapter.celery.consumer.ConsumerHandle``)."""

    @property
    def consumer(self) -> Any:
        """The running consumer, or None."""

    @property
    def pool_is_prefork(self) -> bool:
        """True when jobs run in pool children that can be killed."""


def record_stopped(
    task: Task, lifecycle: Lifecycle, job_id: str, err: Exception, *, claim_waiting: bool,
    job_timeout: Any = None,
) -> None:  # fmt: skip
    """Record the attempt of ``job_id`` stopped from outside as failed; publish its retry.

    A retry keeps the job's own ``job_timeout`` (its message header), if it had one.
    """
    try:
        with no_fork():  # the prefork pool's parent: store connections must not fork mid-call
            outcome = lifecycle.stopped(job_id, err, claim_waiting=claim_waiting)
        if outcome is not None and outcome.kind == OutcomeKind.RETRY and outcome.job is not None:
            JobPublisher(task.app, task).publish(
                outcome.job, countdown=outcome.retry_in_s, timeout=job_timeout
            )
    except JobQueueError as lost:  # the reaper hands it back once its heartbeat is stale
        logger.error("job %s: %s, and it could not be recorded: %s", job_id, err, lost)
        return
    logger.error("job %s: %s", job_id, err)


class Watchdog:
    """One thread per worker main process: forced stops after the grace period."""

    def __init__(
        self, consumers: Consumers, task: Task, lifecycle: Lifecycle, timeouts: Timeouts
    ) -> None:
        self._consumers = consumers
        self._task = task
        self._lifecycle = lifecycle
        self._timeouts = timeouts
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._handled: set[Any] = set()  # requests forced (or found unstoppable)
        self._cancelled_at: dict[str, float] = {}  # job id -> when the cancel was first seen
        self._last_poll = 0.0

    def start(self) -> None:
        """Start the thread (idempotent)."""
        if self._thread is not None and self._thread.is_alive():
            return
        self._stopping.clear()
        self._thread = threading.Thread(target=self._loop, name="adapter-watchdog", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop the thread; running jobs are left alone."""
        self._stopping.set()

    def _loop(self) -> None:
        while not self._stopping.wait(TICK_S):
            try:
                self.look()
            except JobQueueError as err:
                logger.warning("could not look after the running jobs' deadlines: %s", err)
            except Exception:  # the thread must outlive any surprise
                logger.exception("the job watchdog failed a round")

    def look(self) -> None:
        """One round: force the requests past their timeout or cancel, plus the grace."""
        active = self._active()
        now = time.time()
        grace = self._timeouts.grace
        self._handled &= set(active)
        # A job killed a moment ago may still be listed beside its retry (same id): the newest.
        requests = {str(r.id): r for r in active if r not in self._handled and r.time_start}
        self._cancelled_at = {i: t for i, t in self._cancelled_at.items() if i in requests}
        for job_id, request in list(requests.items()):
            timeout = request.request_dict.get(TIMEOUT_FIELD)
            if timeout and now >= request.time_start + timeout + grace:
                self._handled.add(requests.pop(job_id))
                record_stopped(
                    self._task, self._lifecycle, job_id, timeout_error(timeout),
                    claim_waiting=False, job_timeout=request.request_dict.get(TIMEOUT_HEADER),
                )  # fmt: skip
                self._force(request, cancelled=False)
        if requests and now - self._last_poll >= CANCEL_POLL_INTERVAL_S:
            self._last_poll = now
            with no_fork():
                cancelled = self._lifecycle.store.cancelled_among(list(requests))
            for job_id in cancelled:
                self._cancelled_at.setdefault(job_id, now)
        for job_id, seen in list(self._cancelled_at.items()):
            if job_id in requests and now - seen >= grace:
                logger.warning("job %s was cancelled %gs ago and still runs", job_id, grace)
                self._handled.add(requests[job_id])
                self._force(requests[job_id], cancelled=True)

    def _active(self) -> list[Any]:
        """The active requests of this app's job task."""
        for _ in range(3):  # the event loop's thread may change the set meanwhile
            try:
                found = list(worker_state.active_requests)
                break
            except RuntimeError:
                continue
        else:
            return []
        app = self._task.app
        return [r for r in found if r.name == TASK_NAME and getattr(r.task, "app", None) is app]

    def _force(self, request: Any, *, cancelled: bool) -> None:
        """Stop ``request``'s attempt by force where the pool can (on the event loop)."""
        consumer = self._consumers.consumer
        if consumer is None:
            return
        if not self._consumers.pool_is_prefork:
            logger.warning(
                "job %s: cannot stop a running job on the %s pool; it was told and runs on",
                request.id,
                type(getattr(consumer, "pool", None)).__name__,
            )
            return
        pool = consumer.pool

        def kill() -> None:
            if request not in worker_state.active_requests:
                return  # ended meanwhile: its own outcome stands
            request.acknowledge()  # never delivered again
            logger.warning("job %s: killing its pool process %s", request.id, request.worker_pid)
            if cancelled:
                request.terminate(pool, signal.SIGKILL)  # announced revoked, as Celery's revoke
            else:
                setattr(request, TIMED_OUT_MARK, True)
                pool.terminate_job(request.worker_pid, signal.SIGKILL)

        _on_loop(consumer, kill)


def _on_loop(consumer: Any, run: Callable[[], None]) -> None:
    """Run ``run`` on the consumer's event loop when it has one (Celery acks there)."""
    hub = getattr(consumer, "hub", None)
    if hub is None:
        consumer.call_soon(run)
    else:
        hub.call_soon(run)
