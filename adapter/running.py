"""Watch the jobs running in this process: tell them of cancellation, keep their heartbeat.

One thread per OS process (a forked prefork child starts its own) looks after the jobs that
run there:

- **Cancellation.** ``cancel_job`` only writes CANCELLED to the store (any process, any
  machine). Every ``CANCEL_POLL_INTERVAL_S`` the thread asks the store which of this process's
  running jobs are cancelled and calls ``cancel()`` on the job objects their processes hold. A
  process sees it as ``job.state == JobState.CANCELLED``, or by calling
  ``job.raise_if_cancelled()``. The stored job stays CANCELLED whatever the process does next.
- **Heartbeat.** Every ``heartbeat_interval`` seconds it stamps the running jobs as alive
  (``JobStore.heartbeat``). A job whose worker died stops beating, and the reaper
  (``adapter.celery.reaper``) hands it back once its beat is older than the heartbeat timeout.
- **Progress.** ``set_progress`` writes to the store at most once per ``PROGRESS_WRITE_S`` per
  job: a call after a quiet spell is written at once, and the calls that follow it within that
  time only keep the latest value, which the thread writes at its next round. A tight loop of
  ``set_progress`` calls therefore costs a few writes per second, not one per call; the
  outcome's write carries the final progress.

- **Timeouts.** A job watched with a timeout is told when it runs out of time
  (``job.time_out``, ``adapter.deadlines``), within ``PROGRESS_WRITE_S``. A job whose
  attempt was recorded as timed out by the watchdog (``abandon``) records no outcome of its own.

Jobs that finish within one poll interval cost no store query at all: a claim is a beat.
"""

from __future__ import annotations

import logging
import os
import threading
import time

from adapter.deadlines import Deadlines, timeout_error
from adapter.errors import JobQueueError
from adapter.forksafe import ForkSafeLock
from adapter.job import Job, JobState
from adapter.settings import HEARTBEAT_INTERVAL
from adapter.store.base import JobStore

logger = logging.getLogger(__name__)

#: How often running jobs' stored states are checked for cancellation, in seconds.
CANCEL_POLL_INTERVAL_S = 0.5
#: Shortest time between two progress writes of one job, in seconds.
PROGRESS_WRITE_S = 0.1


class RunningJobs:
    """This process's running jobs, watched by one thread for cancellation and heartbeat."""

    def __init__(
        self,
        store: JobStore,
        *,
        heartbeat_interval: float = HEARTBEAT_INTERVAL.default,
        poll_interval: float = CANCEL_POLL_INTERVAL_S,
    ) -> None:
        self._store = store
        self._poll_interval = min(poll_interval, heartbeat_interval)
        self._heartbeat_interval = heartbeat_interval
        self._lock = ForkSafeLock()
        self._running: dict[str, Job] = {}
        self._progress: dict[str, float] = {}  # latest progress not written yet, per job
        self._progress_written: dict[str, float] = {}  # when each job's last one was written
        self._deadlines = Deadlines()
        self._abandoned: set[int] = set()  # id() of attempts recorded by the watchdog
        self._wake = threading.Event()
        self._thread_pid = 0

    def watch(self, job: Job, timeout: float | None = None) -> None:
        """Start watching ``job`` while its process runs here (for ``timeout`` s at most)."""
        with self._lock:
            was_idle = not self._running
            self._running[job.id or ""] = job
            self._deadlines.add(job.id or "", timeout, time.monotonic())
            if self._thread_pid != os.getpid():  # first job here, or a forked child's first
                self._thread_pid = os.getpid()
                self._wake = threading.Event()
                threading.Thread(target=self._loop, name="adapter-running", daemon=True).start()
        if was_idle:
            self._wake.set()

    def unwatch(self, job: Job) -> None:
        """Stop watching ``job`` (its outcome's write carries its progress)."""
        with self._lock:
            self._abandoned.discard(id(job))
            if self._running.get(job.id or "") is not job:
                return  # an abandoned attempt ending after its retry started here
            self._running.pop(job.id or "", None)
            self._progress.pop(job.id or "", None)
            self._progress_written.pop(job.id or "", None)
            self._deadlines.remove(job.id or "")

    def abandon(self, job_id: str) -> None:
        """The attempt running ``job_id`` here was recorded as timed out: record nothing more."""
        with self._lock:
            job = self._running.get(job_id)
            if job is not None:
                self._abandoned.add(id(job))

    def abandoned(self, job: Job) -> bool:
        """True when this attempt of ``job`` was recorded elsewhere (``abandon``)."""
        with self._lock:
            return id(job) in self._abandoned

    def progressed(self, job: Job) -> None:
        """``job`` (watched) reported progress: write it now, or keep it for the next round."""
        job_id = job.id or ""
        now = time.monotonic()
        with self._lock:
            if now - self._progress_written.get(job_id, -PROGRESS_WRITE_S) < PROGRESS_WRITE_S:
                self._progress[job_id] = job.progress
                return
            self._progress_written[job_id] = now
            self._progress.pop(job_id, None)
        try:
            self._store.set_progress(job_id, job.progress)
        except JobQueueError as err:  # a busy or unreachable store must not fail the process
            logger.warning("job %s: progress not written yet (%s); trying again", job_id, err)
            with self._lock:
                self._progress.setdefault(job_id, job.progress)

    def _write_progress(self) -> None:
        """Write the latest progress kept since the last write of each job."""
        with self._lock:
            waiting, self._progress = self._progress, {}
            now = time.monotonic()
            for job_id in waiting:
                self._progress_written[job_id] = now
        for job_id, progress in waiting.items():
            try:
                self._store.set_progress(job_id, progress)
            except JobQueueError:
                with self._lock:  # the next round tries again, unless a newer value came
                    self._progress.setdefault(job_id, progress)
                raise

    def _loop(self) -> None:
        last_beat = last_look = time.monotonic()
        while True:
            with self._lock:
                idle = not self._running
            if idle:
                self._wake.wait()
                self._wake.clear()
                last_beat = last_look = time.monotonic()  # the first job's claim was its beat
            time.sleep(min(PROGRESS_WRITE_S, self._poll_interval))
            with self._lock:
                running = dict(self._running)
                overdue = self._deadlines.overdue(time.monotonic())
            if not running:
                continue
            for job_id, seconds in overdue:
                logger.warning("job %s ran out of its %gs: telling it to stop", job_id, seconds)
                running[job_id].time_out(timeout_error(seconds))
            try:
                self._write_progress()
                now = time.monotonic()
                if now - last_look < self._poll_interval:
                    continue
                last_look = now
                if now - last_beat >= self._heartbeat_interval:
                    last_beat = now
                    self._store.heartbeat(list(running))
                cancelled = self._store.cancelled_among(list(running))
            except JobQueueError as err:
                logger.warning("could not look after the running jobs: %s", err)
                continue
            for job_id in cancelled:
                job = running[job_id]
                if job.state != JobState.CANCELLED:
                    logger.info("job %s was cancelled while running", job_id)
                    job.cancel()
