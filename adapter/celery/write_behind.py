"""Write-behind of added jobs: ``add`` publishes at once, a thread records the jobs in batches.

Recording each job before publishing it cost ``add`` a store round trip (a SQLite commit, a
Redis script call) about as long as the publish itself. Now ``add`` publishes a job with a
fresh id first and leaves it here; a thread of this process records what is pending with one
``JobStore.insert_many`` (one transaction or pipeline) shortly after, so one write serves many
adds under load.

- **Visibility.** In this process a job is in the store once ``add`` returns: the strategy
  flushes what is pending before every store access (``find_one``, ``cancel_job``, the claims
  of its own worker). Other processes see it once its batch is written: ``GATHER_S`` plus one
  batch write after ``add``, about a millisecond. At most ``MAX_PENDING`` jobs wait; beyond
  that ``add`` writes the batch itself, so a slow store slows ``add`` down instead of
  stretching the lag.
- **Never overwritten.** A worker may run a job before its batch lands: its claim records the
  job from the message (``JobStore.claim``), and ``insert_many`` skips ids already stored, so
  the late insert never turns a claimed or settled job back to PENDING.
- **Never lost.** Publishing comes first: a job whose message was refused is never recorded.
  ``flush()`` (called by the strategy's ``destroy``, and at interpreter exit) writes what is
  pending. A batch the store refuses, or one lost with a killed process, is logged or lost
  only as a record: its messages are in the broker, and the worker that runs each job records
  it then.
- **Fork.** A forked child starts empty (its parent's pending jobs are the parent's to write)
  and starts its own thread on its first ``add``.
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
import time
from collections.abc import Callable

from adapter.errors import JobQueueError
from adapter.forksafe import ForkSafeLock, no_fork
from adapter.job import Job
from adapter.store.base import JobStore

logger = logging.getLogger(__name__)

#: How long the thread lets jobs gather after the first pending one, in seconds.
GATHER_S = 0.01
#: Pending jobs at which ``add`` writes the batch itself instead of leaving it to the thread.
MAX_PENDING = 1000


class WriteBehind:
    """Jobs published by ``add`` but not yet in the store, written in batches by one thread."""

    def __init__(self, store: Callable[[], JobStore]) -> None:
        self._store = store
        self._lock = ForkSafeLock()  # guards the three fields below
        self._pending: list[Job] = []
        self._unwritten = 0  # pending jobs plus those of the batch being written
        self._pid = 0  # the process whose thread writes ``_pending``
        self._writing = ForkSafeLock()  # one batch at a time, so a flush waits for the last
        self._wake = threading.Event()

    def add(self, job: Job) -> None:
        """Record ``job``, already published, within about a millisecond."""
        with self._lock:
            if self._pid != os.getpid():  # first add here, or a forked child's first
                self._pid = os.getpid()
                self._pending, self._unwritten = [], 0
                self._wake = threading.Event()
                threading.Thread(
                    target=self._loop, args=(self._wake,), name="adapter-write-behind", daemon=True
                ).start()
                atexit.register(self.flush)
            self._pending.append(job)
            self._unwritten += 1
            backlog = len(self._pending)
        if backlog >= MAX_PENDING:
            self.flush()
        elif not self._wake.is_set():
            self._wake.set()

    def flush(self) -> None:
        """Write every pending job of this process; return once they are in the store."""
        if not self._unwritten or self._pid != os.getpid():
            return
        with self._writing:
            with self._lock:
                batch, self._pending = self._pending, []
            if batch:
                self._write(batch)
            with self._lock:
                self._unwritten -= len(batch)

    def _write(self, batch: list[Job]) -> None:
        try:
            with no_fork():  # SQLite must not be mid-transaction when a prefork pool forks
                self._store().insert_many(batch)
        except JobQueueError as err:
            logger.error(
                "could not record %d added jobs (%s); the worker that runs each records it",
                len(batch),
                err,
            )

    def _loop(self, wake: threading.Event) -> None:
        while True:
            wake.wait()
            wake.clear()
            self.flush()  # the first job after a quiet spell is written at once
            time.sleep(GATHER_S)  # the rest of a burst gathers meanwhile
