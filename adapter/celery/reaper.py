"""The reaper: jobs whose worker died are handed back, so nothing stays RUNNING for ever.

A running job beats (``adapter.running``); a job whose beat is older than the heartbeat
timeout lost its worker (SIGKILL, OOM, a machine gone). Every worker of the app runs one
reaper thread, next to its consumer: each round it asks the store for such jobs
(``Lifecycle.lose_silent``: RUNNING -> RETRYING with the reason in ``error``, once per job
however many workers reap) and publishes each again, the same message ``add`` sends. A broker that
redelivers by itself (RabbitMQ when a connection drops, Celery's ``reject_on_worker_lost``
when a pool child dies) is usually faster; the reaper is what makes Redis (whose
``visibility_timeout`` is an hour) and ``filesystem://`` (which loses the message) recover.
On Redis each round also puts back the messages a lost worker had taken but not started
(``adapter.celery.orphans``).

A broker's copy of a job that is still RUNNING with a fresh heartbeat (alive on another
worker) is refused at claim and dropped: after a reaper round, or a redelivery, a job never
runs twice at the same time.

Every start of a job counts as an attempt. A job that keeps killing its worker is not run
for ever: after ``retries + 1 + max_redeliveries`` starts the task records it FAILED.
"""

from __future__ import annotations

import logging
import threading
import time
from datetime import datetime
from typing import Protocol

from adapter.errors import JobQueueError
from adapter.forksafe import no_fork
from adapter.job import Job, utcnow
from adapter.lifecycle import Lifecycle

logger = logging.getLogger(__name__)


class Publisher(Protocol):
    """Sends the message of a job (``adapter.celery.publish.JobPublisher``)."""

    def publish(self, job: Job) -> None:
        """Send it; PublishError when the broker refuses."""


class MessageRecovery(Protocol):
    """What a broker needs on top of the reaper (``adapter.celery.orphans.OrphanRecovery``)."""

    def restore_orphaned_messages(self) -> int:
        """Put back messages taken by lost workers; return how many."""

    def republish_unqueued_jobs(self, created_before: datetime) -> list[Job] | None:
        """Publish again waiting jobs whose message is gone; None when it could not look."""


class Reaper:
    """A thread that hands back the jobs of lost workers, every heartbeat interval."""

    def __init__(
        self, lifecycle: Lifecycle, publisher: Publisher, recovery: MessageRecovery | None = None
    ) -> None:
        """Reap through ``lifecycle``, publish with ``publisher``; ``recovery`` for the broker.

        ``recovery.republish_unqueued_jobs(connected)`` runs once each time the reaper starts
        (as the worker connects), a heartbeat timeout later, when every message taken before
        has been recorded as taken, and again each round while it returns None (it could not
        look).
        """
        self._lifecycle = lifecycle
        self._publisher = publisher
        self._recovery = recovery
        self._liveness = lifecycle.liveness
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Start reaping in the background (again after ``stop``); idempotent."""
        if self._thread is not None and self._thread.is_alive() and not self._stop.is_set():
            return  # running; a thread that is stopping (a consumer restart) is replaced
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._loop, args=(self._stop,), name="adapter-reaper", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        """Stop reaping; a round in progress finishes."""
        self._stop.set()

    def reap_once(self) -> list[Job]:
        """Hand back every job whose heartbeat stopped; return them as published."""
        with no_fork():  # a prefork pool forks its children from this very process
            reaped = self._lifecycle.lose_silent()
        for job in reaped:
            try:
                self._publisher.publish(job)
            except JobQueueError as err:
                logger.error("job %s: could not publish it again (%s); will retry", job.id, err)
                with no_fork():
                    self._lifecycle.still_lost(job)
        return reaped

    def _loop(self, stop: threading.Event) -> None:
        connected = utcnow()
        unqueued_due: float | None = time.monotonic() + self._liveness.heartbeat_timeout
        while not stop.wait(self._liveness.heartbeat_interval):
            try:
                self.reap_once()
                if self._recovery is None:
                    continue
                self._recovery.restore_orphaned_messages()
                if (
                    unqueued_due is not None
                    and time.monotonic() >= unqueued_due
                    and self._recovery.republish_unqueued_jobs(connected) is not None
                ):
                    unqueued_due = None
            except Exception as err:  # the store's and the broker's errors: try next round
                logger.warning("could not look for jobs of lost workers: %s", err)
