"""Counting job events where they are decided, at the cost of an in-memory increment.

``adapter.lifecycle`` (starts, outcomes, cancels, reaps) and ``adapter.celery.adding`` (adds)
call a ``MetricsRecorder``; it adds to a dict under a lock and nothing more. A daemon thread,
started on the first event of each process, adds the dict to the job store's totals
(``adapter.metrics.storage``) in one write every ``FLUSH_EVERY_S``; ``flush()`` does it now,
and so do interpreter exit and a Celery pool process's exit (``adapter.celery.observability``).
A write that fails is kept and added to the next one, so counts are exact across prefork
children, workers and producers; what a process counted in its last second is lost only if
it is killed (SIGKILL) before it flushes.

A forked child (Celery's prefork pool) starts with no pending counts (its parent flushes
those) and starts its own thread on its first event. A worker's main process also says it is
up (``worker_up``) at every flush, which ``adapter_workers_up`` counts.
"""

from __future__ import annotations

import atexit
import bisect
import logging
import os
import threading
import time
import weakref
from collections.abc import Iterable

from adapter.errors import JobQueueError
from adapter.forksafe import no_fork
from adapter.job import Job, JobState, utcnow
from adapter.metrics.catalog import (
    BUCKETS_S,
    Counter,
    Histogram,
    bucket_key,
    counter_key,
    sum_key,
)
from adapter.metrics.storage import MetricsStorage

logger = logging.getLogger(__name__)

#: Seconds between two writes of a process's counts to the store.
FLUSH_EVERY_S = 1.0

#: Outcomes ``Lifecycle.record`` writes, and the counter of each.
_OUTCOME_COUNTERS = {
    JobState.COMPLETED: Counter.COMPLETED,
    JobState.FAILED: Counter.FAILED,
    JobState.RETRYING: Counter.RETRIED,
}

_recorders: weakref.WeakSet[MetricsRecorder] = weakref.WeakSet()
_hooks_installed = False


class MetricsRecorder:
    """Counts job events in memory and adds them to ``storage`` about once a second."""

    def __init__(self, storage: MetricsStorage, *, flush_every: float = FLUSH_EVERY_S) -> None:
        self._storage = storage
        self._flush_every = flush_every
        self._lock = threading.Lock()  # a plain lock (cheaper); renewed in a forked child
        self._flushing = threading.Lock()
        self._pending: dict[str, float] = {}
        self._workers: dict[str, float | None] = {}
        self._worker: str | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        _track(self)

    # -- the events (called where they are decided) ------------------------------------------

    def added(self, jobs: Iterable[Job]) -> None:
        """Jobs were published and recorded PENDING."""
        self._count_jobs(Counter.ADDED, jobs)

    def started(self, job: Job) -> None:
        """``job`` was claimed: an attempt starts; its first start observes its wait (from its
        add, or from its ``ready_at`` for a job delayed until then)."""
        counted = counter_key(Counter.STARTED, job.queue_name)
        if job.attempts == 1 and job.started_at is not None:
            wait = (job.started_at - (job.ready_at or job.created_at)).total_seconds()
            self._add(counted, *_observation(Histogram.WAIT_SECONDS, job.queue_name, wait))
        else:
            self._add(counted)

    def recorded(self, job: Job) -> None:
        """An attempt's outcome was written: COMPLETED, FAILED or RETRYING; observe its run."""
        counter = _OUTCOME_COUNTERS.get(job.state)
        if counter is None:
            return
        counted = counter_key(counter, job.queue_name)
        if job.started_at is not None:
            ended = job.settled_at or utcnow()  # RETRYING: recorded just now
            run = (ended - job.started_at).total_seconds()
            self._add(counted, *_observation(Histogram.RUN_SECONDS, job.queue_name, run))
        else:
            self._add(counted)

    def cancelled(self, jobs: Iterable[Job]) -> None:
        """Unsettled jobs became CANCELLED."""
        self._count_jobs(Counter.CANCELLED, jobs)

    def reaped(self, jobs: Iterable[Job]) -> None:
        """RUNNING jobs of lost workers were handed back."""
        self._count_jobs(Counter.REAPED, jobs)

    def worker_up(self, name: str) -> None:
        """This process is the worker ``name``: say so at every flush, from now on."""
        with self._lock:
            self._worker = name
        self._ensure_thread()

    def worker_down(self) -> None:
        """This worker stops: remove its mark now."""
        with self._lock:
            if self._worker is not None:
                self._workers[self._worker] = None
            self._worker = None
        self.flush()

    # -- writing ------------------------------------------------------------------------------

    def flush(self) -> None:
        """Add this process's counts to the store now; kept for the next try if it fails."""
        with self._flushing:  # one flush at a time: a worker's last mark lands last
            self._flush()

    def _flush(self) -> None:
        with self._lock:
            pending, self._pending = self._pending, {}
            workers, self._workers = self._workers, {}
            if self._worker is not None:
                workers[self._worker] = time.time()
        if not pending and not workers:
            return
        try:
            with no_fork():  # a prefork worker forks pool processes from this very process
                self._storage.write(pending, workers)
        except JobQueueError as err:
            logger.warning("could not write metrics to the job store (%s); will retry", err)
            with self._lock:
                for key, amount in pending.items():
                    self._pending[key] = self._pending.get(key, 0) + amount
                for name, seen in workers.items():
                    self._workers.setdefault(name, seen)

    def close(self) -> None:
        """Stop the flushing thread after a last flush."""
        self._stop.set()
        self.flush()

    def _add(self, counted: str, *observed: tuple[str, float]) -> None:
        """Add 1 to the counter field ``counted``, and each (field, amount) of ``observed``."""
        with self._lock:
            pending = self._pending  # read under the lock: a flush swaps it
            pending[counted] = pending.get(counted, 0) + 1
            for key, amount in observed:
                pending[key] = pending.get(key, 0) + amount
        if self._thread is None:
            self._ensure_thread()

    def _count_jobs(self, counter: Counter, jobs: Iterable[Job]) -> None:
        for job in jobs:
            self._add(counter_key(counter, job.queue_name))

    def _ensure_thread(self) -> None:
        with self._lock:
            if self._thread is not None or self._stop.is_set():
                return
            self._thread = threading.Thread(target=self._loop, name="adapter-metrics", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.wait(self._flush_every):
            self.flush()

    def _forked(self) -> None:
        """In a forked child: no thread, no counts of the parent, not the parent's worker."""
        self._lock = threading.Lock()
        self._flushing = threading.Lock()
        self._thread = None
        self._pending = {}
        self._workers = {}
        self._worker = None


class NoMetrics(MetricsRecorder):
    """Counts nothing: for a ``Lifecycle`` or ``JobAdder`` made without a recorder."""

    def __init__(self) -> None:
        super().__init__(_Nowhere())

    def _add(self, counted: str, *observed: tuple[str, float]) -> None:
        return None


class _Nowhere:
    def write(self, increments: object, workers: object) -> None:
        return None

    def read(self) -> tuple[dict[str, float], dict[str, float]]:
        return {}, {}


def _observation(histogram: Histogram, queue_name: str, seconds: float) -> list[tuple[str, float]]:
    """Return the fields one observation adds to: its bucket (non-cumulative) and the sum."""
    seconds = max(seconds, 0.0)
    bucket = bisect.bisect_left(BUCKETS_S, seconds)  # le: a value on a bound is in it
    return [
        (bucket_key(histogram, queue_name, bucket), 1.0),
        (sum_key(histogram, queue_name), seconds),
    ]


def flush_all() -> None:
    """Flush every recorder of this process (at exit; at a pool process's exit)."""
    for recorder in list(_recorders):
        recorder.flush()


def _after_fork_in_child() -> None:
    for recorder in list(_recorders):
        recorder._forked()


def _track(recorder: MetricsRecorder) -> None:
    """Remember ``recorder`` for exit and fork; the hooks are installed with the first one."""
    global _hooks_installed
    if not _hooks_installed:
        os.register_at_fork(after_in_child=_after_fork_in_child)
        atexit.register(flush_all)
        _hooks_installed = True
    _recorders.add(recorder)
