"""The store's part in delayed, unique and debounced jobs (``SchedulingStore``).

Design:

- A job stored with ``ready_at`` is *due-marked*: the store keeps it in an index by
  ``ready_at`` (SQL: the internal ``due_at`` column; Redis: the ``{p}:idx:due`` sorted set;
  memory: a field of its record). Nobody publishes it at ``add``: a worker's promoter
  (``adapter.celery.promoter``) calls ``take_due``, which removes the marks of the due jobs
  atomically, so however many workers poll, each due job is handed to one of them, which
  publishes it. A job whose publish failed is marked again (``mark_due``).
- ``claim`` of a job whose ``ready_at`` is still in the future starts nothing: the job is
  marked due again and the message is dropped. A message that arrives early (another producer,
  a reschedule after the promoter published it) therefore never runs a job before its time.
- The START of an attempt removes the mark, so a job a message started is not published
  again. A cancelled or settled job's mark is ignored (``take_due`` takes waiting jobs only).
- ``add_unique`` adds a job unless a *waiting* job (PENDING or RETRYING, delayed or not) of
  the same queue has the same ``unique_key``: then it returns that job, after replacing its
  data and moving its ``ready_at`` (and mark) to the new job's when ``replace`` (debounce).
  One check-and-write per key at a time, across processes. A key is free again once its job
  starts. Only ``add_unique`` checks keys: ``insert``/``insert_many`` store what they get.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from datetime import datetime

from adapter.job import STARTABLE_STATES, Job, utcnow

#: States in which a job holds its unique key and may be promoted: it waits to start.
WAITING_STATES = STARTABLE_STATES


class SchedulingStore(ABC):
    """Due-marked jobs and unique keys: what delays, debounces and unique adds need."""

    def now(self) -> datetime:
        """The store's clock, timezone-aware UTC: what the promoters of every worker compare
        ``ready_at`` with, so a worker whose clock runs ahead publishes nothing early. This
        default (memory, SQLite: one machine) is this process's clock."""
        return utcnow()

    @abstractmethod
    def take_due(self, now: datetime, limit: int) -> list[Job]:
        """Remove the due mark of at most ``limit`` waiting jobs with ``ready_at <= now``,
        earliest first, and return them: the caller publishes each, exactly once."""

    @abstractmethod
    def mark_due(self, job_id: str, ready_at: datetime) -> Job | None:
        """Set a waiting job's ``ready_at`` and due-mark it then (reschedule, failed publish).

        Returns the job as stored now, or None when it is not waiting (running, settled,
        unknown): then nothing changed.
        """

    @abstractmethod
    def add_unique(self, job: Job, *, replace: bool) -> tuple[Job, bool]:
        """Insert ``job`` (which has a ``unique_key``) unless a waiting job holds its key.

        Returns ``(job as stored, True)`` when inserted, else ``(the waiting job, False)``;
        with ``replace`` that job first takes ``job``'s data and ``ready_at`` (due-marked).
        DuplicateJobError when ``job.id`` is taken by another job.
        """
