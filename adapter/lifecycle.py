"""What each event does to a job, decided in one place from ``adapter.job``'s rules.

Broker-agnostic: the Celery side (``adapter.celery.task``, the reaper, the worker's shutdown)
turns messages and signals into these calls and the returned ``Outcome`` back into Celery's
vocabulary (retry, failure, reject). The rules themselves are ``adapter.job``'s: the
transitions ``START``, ``DEFER``, ``CANCEL``, ``LOSE``, ``BEAT`` and the methods ``complete``
and ``fail``. A store applies what it is given atomically and keeps the settled guard.

=================  ==========================================================================
event              what happens to the job
=================  ==========================================================================
claim              ``START`` (a copy RUNNING with a fresh beat elsewhere is not claimed);
                   started more than ``retries + 1 + max_redeliveries`` times: FAILED;
                   a job missing from the store is recorded from its message as ``add``
                   records it (PENDING, whatever the message says), then claimed (on
                   PostgreSQL both in one upsert: it appears RUNNING); a job stored for
                   another queue is not touched (``WrongQueueError``)
progress           the progress is recorded while the job is unsettled
process returns    ``complete(result)``: COMPLETED (a job cancelled meanwhile stays CANCELLED)
process raises     ``fail(error)``: RETRYING after the backoff while retries remain, else
                   FAILED (a job cancelled meanwhile stays CANCELLED)
timeout            the process is told (``adapter.deadlines``); the attempt fails with
                   "timed out after N s" however it ends; after the grace the watchdog
                   records that failure and stops the process where the pool can
cancel             ``CANCEL``; a running process is told (``adapter.running``); Celery's
                   ``revoke`` of a job's id cancels it too (``adapter.celery.controls``)
purge              ``PURGE``: the waiting jobs of a purged celery queue are CANCELLED with
                   the reason (``adapter.celery.purge``)
shutdown           ``DEFER``: PENDING with attempts reset, for another worker
lost worker        ``LOSE``: a RUNNING job silent for the heartbeat timeout becomes RETRYING
                   with the reason, to be published again
poison             no job changes: the message is kept as a dead letter
=================  ==========================================================================
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from adapter.backoff import BackoffStrategy
from adapter.data import ensure_json
from adapter.errors import StoreError
from adapter.job import CANCEL, DEFER, LOSE, PURGE, STARTABLE_STATES, Job, JobState, utcnow
from adapter.metrics.recorder import MetricsRecorder, NoMetrics
from adapter.processes import call_process
from adapter.running import RunningJobs
from adapter.settings import (
    HEARTBEAT_INTERVAL,
    HEARTBEAT_TIMEOUT,
    MAX_REDELIVERIES,
    AdapterSettings,
)
from adapter.store.base import Claimed, JobStore

logger = logging.getLogger(__name__)

#: Jobs read per page while looking for the waiting jobs of a purged queue.
PURGE_PAGE = 1000
#: Pauses between tries to record an outcome in a busy or unreachable store, in seconds.
RECORD_RETRY_DELAYS_S = (0.2, 0.5, 1.0, 2.0, 4.0)


@dataclass(frozen=True)
class Liveness:
    """How workers prove they are alive, and what happens to the jobs of those that are not."""

    heartbeat_interval: float = HEARTBEAT_INTERVAL.default
    heartbeat_timeout: float = HEARTBEAT_TIMEOUT.default
    max_redeliveries: int = MAX_REDELIVERIES.default

    @classmethod
    def from_conf(cls, conf: Any) -> Liveness:
        """Read the settings of a Celery app's configuration (``adapter.settings`` checks them)."""
        found = AdapterSettings.from_conf(conf)
        return cls(found.heartbeat_interval, found.heartbeat_timeout, found.max_redeliveries)

    def alive_since(self) -> datetime:
        """Return the oldest heartbeat of a job still counted as running on a live worker."""
        return utcnow() - timedelta(seconds=self.heartbeat_timeout)

    def lost_too_often(self, job: Job) -> bool:
        """True when ``job``, just claimed, has been started more often than it may be."""
        return job.attempts > job.retries + 1 + self.max_redeliveries

    @property
    def lost_reason(self) -> str:
        """The error a job of a lost worker gets."""
        return f"its worker was lost (no heartbeat for {self.heartbeat_timeout:g}s); it runs again"


class OutcomeKind(StrEnum):
    """How an attempt ended, as the broker side must hear it."""

    COMPLETED = "completed"
    #: Failed with retries left: run it again after ``Outcome.retry_in_s``.
    RETRY = "retry"
    FAILED = "failed"
    #: Cancelled while it ran, or settled by someone else before its outcome was recorded.
    SETTLED_ELSEWHERE = "settled_elsewhere"


@dataclass(frozen=True)
class Outcome:
    """The end of one attempt: the job as recorded, and what the broker side does next."""

    kind: OutcomeKind
    job: Job | None = None
    retry_in_s: float = 0.0
    error: BaseException | None = None


#: Records one job's outcome as ``JobStore.update`` does (False: settled elsewhere, unchanged),
#: possibly writing more beside it in the same store call.
OutcomeWrite = Callable[[Job], bool]


class Lifecycle:
    """Applies the table above to jobs in ``store``: one instance per strategy."""

    def __init__(
        self,
        store: JobStore,
        liveness: Liveness,
        backoff: BackoffStrategy,
        running: RunningJobs,
        *,
        record_retry_delays: Sequence[float] = RECORD_RETRY_DELAYS_S,
        metrics: MetricsRecorder | None = None,
    ) -> None:
        self.store = store
        self.metrics = metrics or NoMetrics()  # counts what this table decides
        self.liveness = liveness
        self._backoff = backoff
        self._running = running
        self._record_retry_delays = tuple(record_retry_delays)

    def claim(self, job: Job) -> Job | None:
        """Begin an attempt; None when the job must not run now.

        StoreError when the store cannot be reached, WrongQueueError when the job is stored
        for another queue (nothing ran, nothing changed).
        """
        # Only the id, queue and data of a message count: what it says of state, progress,
        # result or attempts is never recorded (a message cannot make a job COMPLETED).
        recordable = job.as_added(str(job.id))
        return self._started(
            job, self.store.claim(recordable, busy_after=self.liveness.alive_since())
        )

    def may_batch(self, queue_name: str) -> bool:
        """True when the jobs of ``queue_name`` may be claimed with ``claim_many`` (no gate)."""
        return True

    def claim_many(self, jobs: Sequence[Job]) -> list[Claimed]:
        """``claim`` each of ``jobs`` (distinct ids, one queue) in one store write; one entry
        per job: the claimed job, None (not to run now), or its WrongQueueError.

        StoreError when the store cannot be reached (nothing claimed). Passes no queue gate:
        ask ``may_batch`` first.
        """
        recordable = [job.as_added(str(job.id)) for job in jobs]
        found = self.store.claim_many(recordable, busy_after=self.liveness.alive_since())
        return [
            claimed if isinstance(claimed, Exception) else self._started(job, claimed)
            for job, claimed in zip(jobs, found, strict=True)
        ]

    def _started(self, job: Job, claimed: Job | None) -> Job | None:
        """``job``'s claim came back: count it; None when it must not run (FAILED when it
        was lost too often)."""
        if claimed is None:
            logger.info("job %s is settled or running elsewhere; not running it again", job.id)
            return None
        self.metrics.started(claimed)
        if self.liveness.lost_too_often(claimed):
            claimed.fail(
                f"started {claimed.attempts} times without finishing: its worker was lost each "
                f"time; not run again (at most {self.liveness.max_redeliveries} restarts after "
                "lost workers)"
            )
            logger.error("job %s: %s", claimed.id, claimed.error)
            self.record(claimed)
            return None
        return claimed

    def attempt(
        self,
        job: Job,
        process: Callable[[Job], Any],
        timeout: float | None = None,
        *,
        write: OutcomeWrite | None = None,
    ) -> Outcome:
        """Run ``process`` on the claimed ``job`` and record the outcome.

        With ``timeout`` (seconds) the process is told to stop once it runs out of time, and the
        attempt fails with the timeout error however it ends (``adapter.deadlines``).
        ``write`` records the outcome in place of the store's ``update`` (the same guard, with
        more written beside it). StoreError when the outcome could not be recorded after every
        retry (the process ran; the broker should deliver the job again).
        """
        return self.attempt_many([job], process, timeout, write=write)[0]

    def attempt_many(
        self,
        jobs: Sequence[Job],
        process: Callable[[Job], Any],
        timeout: float | None = None,
        *,
        write: OutcomeWrite | None = None,
    ) -> list[Outcome]:
        """Run ``process`` on each claimed job in turn, then record every outcome in one write.

        Every job is watched (cancel notices, heartbeats) from the start of the batch until the
        write, so a job waiting for its turn keeps its claim alive; one cancelled meanwhile
        does not run. ``timeout`` (seconds) bounds each job from its own start. StoreError
        when the outcomes could not be recorded after every retry (the processes ran; the
        broker should deliver the jobs again).
        """
        decided: list[tuple[Job, Exception | None, Outcome | None]] = []
        for job in jobs:  # until the outcomes are recorded: cancel notices, heartbeats
            self._running.watch(job)
        try:
            for job in jobs:
                decided.append(self._run(job, process, timeout))
            unsettled = [job for job, _, early in decided if early is None]
            written = iter(self.record_many(unsettled, write) if unsettled else [])
            return [early or self._outcome(job, err, next(written)) for job, err, early in decided]
        finally:
            for job in jobs:
                self._running.unwatch(job)

    def _run(
        self, job: Job, process: Callable[[Job], Any], timeout: float | None
    ) -> tuple[Job, Exception | None, Outcome | None]:
        """Run one attempt and decide its outcome: the job, its error, and its ``Outcome`` when
        it needs no write (cancelled while it ran)."""
        running = self._running

        def persist_progress(progressed: Job) -> None:  # a function: copies of a job share it
            running.progressed(progressed)  # written a few times a second at most

        job.on("progress", persist_progress)
        if job.state == JobState.CANCELLED:  # cancelled while it waited for its turn
            logger.info("job %s was cancelled before it ran; not running it", job.id)
            return job, None, Outcome(OutcomeKind.SETTLED_ELSEWHERE, job)
        if timeout is not None:
            running.watch(job, timeout)  # its deadline counts from its own start
        try:
            result = call_process(process, job)
            ensure_json(result, root="result")
        except Exception as err:  # a process may raise anything: it is a failed attempt
            if running.abandoned(job):  # its timeout was recorded by the watchdog
                return job, err, Outcome(OutcomeKind.SETTLED_ELSEWHERE, job, error=err)
            failure = job.timed_out or err
            return job, failure, self._decide(job, None, failure)
        if running.abandoned(job):
            return job, None, Outcome(OutcomeKind.SETTLED_ELSEWHERE, job)
        if job.timed_out is not None:  # returned after the notice: still out of time
            return job, job.timed_out, self._decide(job, None, job.timed_out)
        return job, None, self._decide(job, result, None)

    def _decide(self, job: Job, result: Any, err: Exception | None) -> Outcome | None:
        """Apply the process's end to ``job``; an Outcome when nothing is to be written."""
        if job.state == JobState.CANCELLED:
            if err is None:
                logger.info("job %s finished after it was cancelled; it stays CANCELLED", job.id)
            else:
                logger.info("job %s stopped after it was cancelled: %s", job.id, err)
            return Outcome(OutcomeKind.SETTLED_ELSEWHERE, job, error=err)
        if err is None:
            job.complete(result)
        else:
            job.fail(err)
        return None

    def _outcome(self, job: Job, err: Exception | None, written: bool) -> Outcome:
        """What the broker side does after ``job``'s outcome write (``written``: it applied)."""
        if not written:
            return Outcome(OutcomeKind.SETTLED_ELSEWHERE, job, error=err)
        if err is None:
            return Outcome(OutcomeKind.COMPLETED, job)
        if job.state == JobState.RETRYING:
            delay_ms = self._backoff(job.queue_name, job.attempts, job)
            return Outcome(OutcomeKind.RETRY, job, max(delay_ms, 0) / 1000, err)
        return Outcome(OutcomeKind.FAILED, job, error=err)

    def completed(self, job: Job, result: Any) -> Outcome:
        """The process returned ``result``: COMPLETED, unless cancelled meanwhile."""
        return self._decide(job, result, None) or self._outcome(job, None, self.record(job))

    def failed(self, job: Job, err: Exception) -> Outcome:
        """The process raised ``err``: RETRYING after the backoff, or FAILED."""
        return self._decide(job, None, err) or self._outcome(job, err, self.record(job))

    def stopped(self, job_id: str, err: Exception, *, claim_waiting: bool) -> Outcome | None:
        """An attempt of ``job_id`` was stopped from outside (a time limit, a timeout): fail it.

        Only a RUNNING job is failed (``failed``: RETRYING or FAILED); with ``claim_waiting``
        a job stopped before its claim is claimed first, so the attempt counts. A process still
        running here records nothing more (``RunningJobs.abandon``). None: nothing to record.
        """
        job = self.store.get(job_id)
        if job is not None and claim_waiting and job.state in STARTABLE_STATES:
            job = self.claim(job)
        if job is None or job.state != JobState.RUNNING:
            return None
        self._running.abandon(job_id)
        return self.failed(job, err)

    def record(self, job: Job) -> bool:
        """Write an attempt's outcome; False when the job was settled elsewhere.

        A busy store is retried; StoreError after the last try (never given up on quietly).
        """
        return self.record_many([job])[0]

    def record_many(self, jobs: Sequence[Job], write: OutcomeWrite | None = None) -> list[bool]:
        """``record`` the outcomes of ``jobs`` (distinct ids) in one write; one answer each.

        ``write`` records a lone job's outcome in place of the store's ``update``.
        """
        for delay in self._record_retry_delays:
            try:
                return self._written(jobs, self._write(jobs, write))
            except StoreError as err:
                which = ", ".join(str(job.id) for job in jobs[:3]) + (", ..." if jobs[3:] else "")
                logger.warning("job %s: recording the outcome failed (%s); retrying", which, err)
                time.sleep(delay)
        return self._written(jobs, self._write(jobs, write))

    def _write(self, jobs: Sequence[Job], write: OutcomeWrite | None) -> list[bool]:
        if len(jobs) > 1:
            return self.store.update_many(jobs)
        return [(write or self.store.update)(jobs[0])]

    def _written(self, jobs: Sequence[Job], written: list[bool]) -> list[bool]:
        for job, done in zip(jobs, written, strict=True):
            if done:
                self.metrics.recorded(job)
            else:
                logger.info(
                    "job %s was settled elsewhere; its %s outcome is not recorded",
                    job.id,
                    job.state,
                )
        return written

    def cancel(self, job_id: str) -> Job | None:
        """Cancel an unsettled job (``CANCEL``); a process running it is told within a poll.

        Returns the job as stored now (unchanged when it was settled), or None.
        """
        changed = self.cancel_many([job_id])
        return changed[0] if changed else self.store.get(job_id)

    def cancel_many(self, job_ids: Sequence[str]) -> list[Job]:
        """Cancel the unsettled jobs among ``job_ids`` (other ids are skipped); return them."""
        cancelled = self.store.apply(CANCEL, job_ids)
        self.metrics.cancelled(cancelled)
        return cancelled

    def purged(self, queue_name: str, before: datetime) -> list[Job]:
        """Cancel the jobs of ``queue_name`` waiting since before ``before``; return them.

        A purge removed their messages (``PURGE``: the reason becomes their error).
        """
        waiting: list[str] = []
        while True:
            page = self.store.find_many(
                {
                    "filter": {
                        "queueName": {"eq": queue_name},
                        "state": {"in": [state.value for state in STARTABLE_STATES]},
                        "createdAt": {"before": before.isoformat()},
                    },
                    "skip": len(waiting),
                    "take": PURGE_PAGE,
                }
            )
            waiting.extend(job.id for job in page.items if job.id)
            if len(page.items) < PURGE_PAGE:
                break
        reason = f"cancelled: the messages of queue {queue_name!r} were purged from the broker"
        cancelled = self.store.apply(PURGE, waiting, given={"error": reason})
        self.metrics.cancelled(cancelled)
        return cancelled

    def defer(self, job_ids: Sequence[str]) -> list[Job]:
        """Shutdown: send these RUNNING jobs back to PENDING for another worker."""
        return self.store.apply(DEFER, job_ids)

    def lose_silent(self) -> list[Job]:
        """Lost workers: every RUNNING job silent for the heartbeat timeout becomes RETRYING."""
        reason = self.liveness.lost_reason
        lost = self.store.apply(
            LOSE, None, stale_before=self.liveness.alive_since(), given={"error": reason}
        )
        self.metrics.reaped(lost)
        for job in lost:
            logger.warning("job %s on %r: %s", job.id, job.queue_name, reason)
        return lost

    def still_lost(self, job: Job) -> None:
        """A lost job could not be published again: RUNNING with a fresh beat, so the next
        round after the heartbeat timeout loses it again."""
        self.store.update(job.model_copy(update={"state": JobState.RUNNING}))
