"""Tell running jobs that they were cancelled, in whichever worker process runs them.

``cancel_job`` only writes CANCELLED to the store (any process, any machine). Each worker
process has one watcher thread that, while jobs run there, asks the store every
``CANCEL_POLL_INTERVAL_S`` which of them are cancelled and calls ``cancel()`` on the job
objects their processes hold. A process sees it as ``job.state == JobState.CANCELLED``, or
by calling ``job.raise_if_cancelled()``. The stored job stays CANCELLED whatever the process
does afterwards (settled jobs are never overwritten).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable

from adapter.errors import JobQueueError
from adapter.job import Job, JobState
from adapter.store.base import JobStore

logger = logging.getLogger(__name__)

#: How often running jobs' stored states are checked for cancellation, in seconds.
CANCEL_POLL_INTERVAL_S = 0.5


class CancellationWatcher:
    """One thread per OS process that marks this process's running jobs when cancelled."""

    def __init__(
        self, store: Callable[[], JobStore], interval: float = CANCEL_POLL_INTERVAL_S
    ) -> None:
        self._store = store
        self._interval = interval
        self._lock = threading.Lock()
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
                threading.Thread(
                    target=self._loop, name="adapter-cancellation", daemon=True
                ).start()
        if was_idle:
            self._wake.set()

    def unwatch(self, job: Job) -> None:
        """Stop watching ``job``."""
        with self._lock:
            self._running.pop(job.id or "", None)

    def _loop(self) -> None:
        # Only jobs still running one interval after the last look cost a store query, so
        # short jobs never do.
        while True:
            with self._lock:
                idle = not self._running
            if idle:
                self._wake.wait()
                self._wake.clear()
            time.sleep(self._interval)
            with self._lock:
                running = dict(self._running)
            if not running:
                continue
            try:
                cancelled = self._store().cancelled_among(list(running))
            except JobQueueError as err:
                logger.warning("could not check running jobs for cancellation: %s", err)
                continue
            for job_id in cancelled:
                job = running[job_id]
                if job.state != JobState.CANCELLED:
                    logger.info("job %s was cancelled while running", job_id)
                    job.cancel()
