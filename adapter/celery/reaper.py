"""The reaper: jobs whose worker died are handed back, so nothing stays RUNNING for ever.

A running job beats (``adapter.running``); a job whose beat is older than the heartbeat
timeout lost its worker (SIGKILL, OOM, a machine gone). Every worker of the app runs one
reaper thread, next to its consumer: each round it asks the store for such jobs
(``JobStore.reap``: RUNNING -> RETRYING with the reason in ``error``, once per job however
many workers reap) and publishes each again, the same message ``add`` sends. A broker that
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
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from adapter.errors import JobQueueError
from adapter.forksafe import no_fork
from adapter.job import Job, JobState, utcnow
from adapter.settings import (
    HEARTBEAT_INTERVAL,
    HEARTBEAT_TIMEOUT,
    MAX_REDELIVERIES,
    AdapterSettings,
)
from adapter.store.base import JobStore

logger = logging.getLogger(__name__)


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


class Reaper:
    """A thread that hands back the jobs of lost workers, every heartbeat interval."""

    def __init__(
        self,
        store: Callable[[], JobStore],
        publish: Callable[[Job], None],
        liveness: Liveness,
        restore_messages: Callable[[], int] = lambda: 0,
        republish_unqueued: Callable[[datetime], object] = lambda connected: [],
    ) -> None:
        """Reap in ``store``; ``restore_messages`` puts back a broker's orphaned messages.

        ``republish_unqueued(connected)`` publishes again the waiting jobs created before
        ``connected`` whose message the broker lost; it runs once each time the reaper
        starts (as the worker connects), a heartbeat timeout later, when every message
        taken before has been recorded as taken, and again each round while it returns None
        (it could not look).
        """
        self._store = store
        self._publish = publish
        self._liveness = liveness
        self._restore_messages = restore_messages
        self._republish_unqueued = republish_unqueued
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
        timeout = self._liveness.heartbeat_timeout
        reason = f"its worker was lost (no heartbeat for {timeout:g}s); it runs again"
        # The store first: getting it writes this process's pending adds, which take their own
        # locks and no_fork() (adapter.celery.write_behind); inside no_fork() only store calls.
        store = self._store()
        with no_fork():  # a prefork pool forks its children from this very process
            reaped = store.reap(self._liveness.alive_since(), reason)
        for job in reaped:
            logger.warning("job %s on %r: %s", job.id, job.queue_name, reason)
            try:
                self._publish(job)
            except JobQueueError as err:
                # Back to RUNNING with a fresh beat: the next round after the timeout tries again.
                logger.error("job %s: could not publish it again (%s); will retry", job.id, err)
                with no_fork():
                    store.update(job.model_copy(update={"state": JobState.RUNNING}))
        return reaped

    def _loop(self, stop: threading.Event) -> None:
        connected = utcnow()
        unqueued_due: float | None = time.monotonic() + self._liveness.heartbeat_timeout
        while not stop.wait(self._liveness.heartbeat_interval):
            try:
                self.reap_once()
                self._restore_messages()
                if (
                    unqueued_due is not None
                    and time.monotonic() >= unqueued_due
                    and self._republish_unqueued(connected) is not None
                ):
                    unqueued_due = None
            except Exception as err:  # the store's and the broker's errors: try next round
                logger.warning("could not look for jobs of lost workers: %s", err)
