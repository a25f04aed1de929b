"""The promoter: publishes delayed jobs when they are due, from every worker, each job once.

A job added with ``ready_at`` (a delay, a run time, a debounce) is stored PENDING and
due-marked, not published (``adapter.store.scheduling``). Every worker of the app runs one
promoter thread next to its consumer (started and stopped with the reaper). Each round, every
``PROMOTE_INTERVAL_S``, it takes the due jobs from the store (``take_due``: atomic, so two
workers never take the same job) and publishes each, the same message ``add`` sends. A job
whose publish fails is marked due again for the next round.

The delay lives in the store, not in Celery's ETA/countdown (worker memory, and Redis's
visibility timeout): it survives worker and broker restarts. The time compared is the
store's clock (``SchedulingStore.now``: Redis ``TIME``, PostgreSQL ``now()``), the same for
every worker whatever its own clock. The claim compares the job's ``ready_at`` with the
claiming worker's clock and hands an early message back to the promoter (a worker whose clock
runs behind starts the job one round later for each such look).
"""

from __future__ import annotations

import logging
import threading

from adapter.celery.reaper import Publisher
from adapter.errors import JobQueueError
from adapter.forksafe import no_fork
from adapter.job import Job, utcnow
from adapter.store.scheduling import SchedulingStore

logger = logging.getLogger(__name__)

#: Seconds between two looks for due jobs: a delayed job starts at most this late (plus the
#: publish and the broker's delivery), well within a second.
PROMOTE_INTERVAL_S = 0.25
#: Due jobs taken per store call; a round takes batches until fewer come back.
PROMOTE_BATCH = 500


class Promoter:
    """A thread that publishes the due delayed jobs, every ``interval`` seconds."""

    def __init__(
        self, store: SchedulingStore, publisher: Publisher, interval: float = PROMOTE_INTERVAL_S
    ) -> None:
        self._store = store
        self._publisher = publisher
        self._interval = interval
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Start promoting in the background (again after ``stop``); idempotent."""
        if self._thread is not None and self._thread.is_alive() and not self._stop.is_set():
            return
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._loop, args=(self._stop,), name="adapter-promoter", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        """Stop promoting; a round in progress finishes."""
        self._stop.set()

    def promote_once(self) -> list[Job]:
        """Publish the jobs due now (one batch); return them."""
        with no_fork():  # a prefork pool forks its children from this very process
            due = self._store.take_due(self._store.now(), PROMOTE_BATCH)
        for job in due:
            try:
                self._publisher.publish(job)
            except JobQueueError as err:
                logger.error("delayed job %s: could not publish it (%s); will retry", job.id, err)
                with no_fork():
                    self._store.mark_due(str(job.id), job.ready_at or utcnow())
        return due

    def _loop(self, stop: threading.Event) -> None:
        while not stop.wait(self._interval):
            try:
                while len(self.promote_once()) == PROMOTE_BATCH and not stop.is_set():
                    pass
            except Exception as err:  # the store's and the broker's errors: try next round
                logger.warning("could not publish due delayed jobs: %s", err)
