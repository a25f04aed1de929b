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

Jobs that finish within one poll interval cost no store query at all: a claim is a beat.
"""

from __future__ import annotations

import logging
import os
import threading
import time

from adapter.errors import JobQueueError
from adapter.forksafe import ForkSafeLock
from adapter.job import Job, JobState
from adapter.settings import HEARTBEAT_INTERVAL
from adapter.store.base import JobStore

logger = logging.getLogger(__name__)

#: How often running jobs' stored states are checked for cancellation, in seconds.
CANCEL_POLL_INTERVAL_S = 0.5


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
        self._wake = threading.Event()
        self._thread_pid = 0

    def watch(self, job: Job) -> None:
        """Start watching ``job`` while its process runs here."""
        with self._lock:
            was_idle = not self._running
            self._running[job.id or ""] = job
            if self._thread_pid != os.getpid():  # first job here, or a forked child's first
                self._thread_pid = os.getpid()
                self._wake = threading.Event()
                threading.Thread(target=self._loop, name="adapter-running", daemon=True).start()
        if was_idle:
            self._wake.set()

    def unwatch(self, job: Job) -> None:
        """Stop watching ``job``."""
        with self._lock:
            self._running.pop(job.id or "", None)

    def _loop(self) -> None:
        last_beat = time.monotonic()
        while True:
            with self._lock:
                idle = not self._running
            if idle:
                self._wake.wait()
                self._wake.clear()
                last_beat = time.monotonic()  # the claim of the first job was its beat
            time.sleep(self._poll_interval)
            with self._lock:
                running = dict(self._running)
            if not running:
                continue
            try:
                if time.monotonic() - last_beat >= self._heartbeat_interval:
                    last_beat = time.monotonic()
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
