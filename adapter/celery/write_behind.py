"""Write-behind of added jobs: ``add`` publishes at once, a thread records the jobs in batches.

Recording each job before publishing it cost ``add`` a store round trip (a SQLite commit, a
Redis script call) about as long as the publish itself. Now ``add`` publishes a job with a
fresh id first and leaves it here; a thread of this process records what is waiting with one
``JobStore.insert_many`` (one transaction, or one script call); when more jobs came while it
wrote (a burst), it then sleeps ``GATHER_S`` so that the next batch gathers them, else it
writes the next add's job at once.

- **Visibility.** In this process a job is in the store once ``add`` returns: the strategy
  flushes what is waiting before every store access (``find_one``, ``cancel_job``, the claims
  of its own worker). Other processes see a job once its batch is written: about a
  millisecond after ``add`` when the thread was idle, at most ``GATHER_S`` plus one batch
  write (20 ms and a few ms) while jobs keep coming, and at once after ``flush()``. When
  ``MAX_PENDING`` jobs wait, ``add`` writes them itself: a slow store slows ``add`` down
  rather than stretch the lag.
- **Never overwritten.** A worker may run a job before its batch lands: its claim records the
  job from the message (``JobStore.claim``), and ``insert_many`` skips ids already stored, so
  the late insert never turns a claimed or settled job back to PENDING.
- **Never lost.** Publishing comes first: a job whose message was refused is never recorded.
  ``flush()`` (the strategy's ``flush`` and ``destroy``, and interpreter exit) writes what is
  waiting. A batch waiting in a killed process is gone: only the record is late, since the
  messages are in the broker and the worker that runs each job records it then.
- **One bad job fails no other.** A batch the store refuses is written again job by job, so
  the good ones are readable at once; a job the store still refuses on its own is logged and
  kept as a ``DeadLetter`` with the store's reason. When the store cannot take even that (it
  is down), the rest of the batch is logged and left to the workers, as above, and the next
  ``flush()`` of this process raises ``StoreError`` saying so (once per such failure).
- **Fork.** A forked child starts empty (its parent's waiting jobs are the parent's to write)
  and starts its own thread on its first ``add``.
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
import time

from adapter.celery.envelope import CONTENT_TYPE, TASK_NAME
from adapter.celery.routing import celery_queue
from adapter.dead_letter import DeadLetter, body_text
from adapter.errors import StoreError
from adapter.forksafe import ForkSafeLock, no_fork
from adapter.job import Job
from adapter.store.base import JobStore

logger = logging.getLogger(__name__)

#: Seconds the thread sleeps after a batch during which more jobs came, so the next gathers them.
GATHER_S = 0.02
#: Waiting jobs at which ``add`` writes them itself instead of leaving them to the thread.
MAX_PENDING = 1000


class WriteBehind:
    """Jobs published by ``add`` but not yet in the store, written in batches by one thread."""

    def __init__(self, store: JobStore) -> None:
        self._store = store
        self._lock = ForkSafeLock()  # guards the three fields below
        self._pending: list[Job] = []
        self._unwritten = 0  # waiting jobs plus those of the batch being written
        self._pid = 0  # the process whose thread writes ``_pending``
        self._writing = ForkSafeLock()  # one batch at a time, so a flush waits for the last
        self._wake = threading.Event()
        self._failure: StoreError | None = None  # jobs left unrecorded since the last flush()

    def add(self, *jobs: Job) -> None:
        """Record ``jobs``, already published, with the next batch."""
        with self._lock:
            if self._pid != os.getpid():  # first add here, or a forked child's first
                self._start_thread()
            self._pending.extend(jobs)
            self._unwritten += len(jobs)
            backlog = len(self._pending)
        if backlog >= MAX_PENDING:
            self.write_waiting()
        elif not self._wake.is_set():
            self._wake.set()

    def flush(self) -> None:
        """Write every waiting job of this process; return once they are in the store.

        StoreError when jobs added here could not be recorded (the store is down) since the
        last call: their messages are published, and the worker that runs each records it.
        """
        self.write_waiting()
        with self._lock:
            failure, self._failure = self._failure, None
        if failure is not None:
            raise failure

    def write_waiting(self) -> None:
        """Write every waiting job of this process, raising nothing (see ``flush``)."""
        if not self._unwritten or self._pid != os.getpid():
            return
        with self._writing:
            with self._lock:
                batch, self._pending = self._pending, []
            try:
                if batch:
                    self._write(batch)
            finally:
                with self._lock:
                    self._unwritten -= len(batch)

    def _write(self, batch: list[Job]) -> None:
        # Any exception: a store may let its driver's errors through (OverflowError, DataError)
        # for a value it cannot hold, and that must not fail the caller of ``flush``.
        try:
            self._insert(batch)
            return
        except Exception as err:
            if len(batch) == 1:
                self._refused(batch, err)
                return
            logger.warning(
                "the store refused a batch of %d added jobs (%s); writing each", len(batch), err
            )
        for index, job in enumerate(batch):
            try:
                self._insert([job])
            except Exception as err:
                if not self._refused(batch[index:], err):
                    return

    def _insert(self, jobs: list[Job]) -> None:
        with no_fork():  # SQLite must not be mid-transaction when a prefork pool forks
            self._store.insert_many(jobs)

    def _refused(self, jobs: list[Job], err: Exception) -> bool:
        """Dead-letter the first of ``jobs``; False, all of them logged, if the store is down."""
        job = jobs[0]
        reason = f"the job store refused added job {job.id}: {type(err).__name__}: {err}"
        try:
            with no_fork():
                self._store.record_dead_letter(_dead_letter(job, reason))
        except Exception as down:
            why = str(err) if str(err) == str(down) else f"{err}; {down}"
            failure = StoreError(
                f"could not record {len(jobs)} added job(s) in the job store ({why}); "
                "their messages are published, and the worker that runs each records it"
            )
            logger.error("%s", failure)
            with self._lock:
                self._failure = failure
            return False
        logger.error("%s; kept as a dead letter", reason)
        return True

    def _start_thread(self) -> None:
        self._pid = os.getpid()
        self._pending, self._unwritten = [], 0
        self._wake = threading.Event()
        threading.Thread(
            target=self._loop, args=(self._wake,), name="adapter-write-behind", daemon=True
        ).start()
        atexit.register(self.write_waiting)

    def _loop(self, wake: threading.Event) -> None:
        while True:
            wake.wait()
            wake.clear()
            try:
                self.write_waiting()
            except Exception:  # a bug here must not stop the batches that follow
                logger.exception("writing a batch of added jobs failed")
            if wake.is_set():  # jobs came while it wrote: a burst, so gather the next batch
                time.sleep(GATHER_S)


def _dead_letter(job: Job, reason: str) -> DeadLetter:
    """Return the dead letter of an added job the store refused: its message's parts."""
    try:
        body: object = job.to_wire()
    except Exception:  # a job forced past validation may not even serialize
        body = repr(job)
    return DeadLetter(
        queue=celery_queue(job.queue_name),
        task_name=TASK_NAME,
        task_id=job.id,
        content_type=CONTENT_TYPE,
        reason=reason,
        body=body_text(body),
    )
