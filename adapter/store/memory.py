"""In-memory job store: the whole ``JobStore`` contract in one process's memory.

URL: ``memory://name`` (``memory://`` is the store named ""). Every opener of one name in a
process gets the same store, as every opener of one SQLite file sees the same jobs; another
name is another store. Nothing is kept when the process exits, and a forked child (Celery's
prefork pool) works on a copy its parent never sees: use it for tests and single-process use
(the solo or threads pool, an embedded worker), never for workers in other processes.

Thread-safe: one lock guards every read and write. Jobs go in and come out as snapshots, never
as objects a caller can change. Transitions are applied by ``Job.apply`` (``adapter.job``) to
the stored copy; this module only adds what a store keeps beside a job, its ``updated_at``
(the last sign of life), and the guard every store keeps: a settled job is never overwritten.
``find_many`` is ``adapter.conditions.list_jobs``. Dead letters are capped like Redis's.
Every write of a job's state or progress wakes its watches (``adapter.store.changes``) at once.
"""

from __future__ import annotations

import functools
import logging
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from itertools import islice
from typing import Any

from adapter.conditions import list_jobs
from adapter.dead_letter import DeadLetter
from adapter.errors import ConfigurationError, DuplicateJobError, WrongQueueError
from adapter.forksafe import ForkSafeLock
from adapter.job import START, Job, JobState, Transition, utcnow
from adapter.listing import JobList, JobListOptions
from adapter.store.base import MUTABLE_FIELDS, Claimed, JobStore, wrong_queue
from adapter.store.changes import ChangeHub, Watch
from adapter.store.schedules import ScheduleStore
from adapter.store.scheduling import WAITING_STATES

logger = logging.getLogger(__name__)

#: URL scheme of the in-memory store.
SCHEME = "memory"
#: The job fields ``update`` writes: the mutable fields a Job has (``updated_at`` is the store's).
_WRITTEN = tuple(name for name in MUTABLE_FIELDS if name in Job.model_fields)
#: Job fields holding times, kept in UTC as the other stores return them.
_TIMES = ("created_at", "started_at", "settled_at", "ready_at")
#: A cutoff every ``updated_at`` is before: a claim without ``busy_after`` takes a RUNNING job.
_END_OF_TIME = datetime.max.replace(tzinfo=UTC)


@dataclass
class _Record:
    """A stored job (never handed out) and its last sign of life."""

    job: Job
    updated_at: datetime
    #: When the promoter should publish the job (``adapter.store.scheduling``); None: not due.
    due: datetime | None = None


class MemoryJobStore(JobStore):
    """Job store in a dict of this process, behind one lock."""

    def __init__(self, url: str = f"{SCHEME}://") -> None:
        """Make an empty store of its own; ``open_store("memory://name")`` shares one by name."""
        self.url = url
        self._lock = ForkSafeLock()
        self._records: dict[str, _Record] = {}
        self._dead_letters: deque[DeadLetter] = deque()
        self._changes = ChangeHub()

    @functools.cached_property
    def schedules(self) -> ScheduleStore:
        from adapter.store.memory_schedules import MemoryScheduleStore

        return MemoryScheduleStore(self)

    def insert(self, job: Job) -> None:
        with self._lock:
            if str(job.id) in self._records:
                raise DuplicateJobError(f"a job with id {job.id!r} already exists")
            self._record(job, utcnow())

    def insert_many(self, new_jobs: Sequence[Job]) -> None:
        now = utcnow()
        with self._lock:
            for job in new_jobs:
                if str(job.id) not in self._records:
                    self._record(job, now)

    def get(self, job_id: str) -> Job | None:
        with self._lock:
            record = self._records.get(job_id)
            return None if record is None else record.job.snapshot()

    def delete(self, job_id: str) -> None:
        with self._lock:
            self._records.pop(job_id, None)

    def claim(self, job: Job, busy_after: datetime | None = None) -> Job | None:
        found = self.claim_many([job], busy_after)[0]
        if isinstance(found, WrongQueueError):
            raise found
        return found

    def claim_many(self, jobs: Sequence[Job], busy_after: datetime | None = None) -> list[Claimed]:
        now, busy = utcnow(), _utc(busy_after) or _END_OF_TIME
        with self._lock:
            found = [self._claim(job, busy, now) for job in jobs]
        for claimed in found:
            if isinstance(claimed, Job):
                self._changes.notify(str(claimed.id))
        return found

    def _claim(self, job: Job, busy: datetime, now: datetime) -> Claimed:
        """Claim one job (the lock is held)."""
        record = self._records.get(str(job.id))
        if record is None:
            logger.info("job %s was not in the store yet; recording it now", job.id)
            record = self._record(job, now)
        elif record.job.queue_name != job.queue_name:
            return wrong_queue(job, record.job.queue_name)
        ready_at = record.job.ready_at
        if ready_at is not None and ready_at > now and record.job.state in WAITING_STATES:
            record.due = ready_at  # early: the promoter publishes it in time
            return None
        if not _transit(record, START, busy, {}, now):
            return None
        record.due = None
        return record.job.snapshot()

    def set_progress(self, job_id: str, progress: float) -> bool:
        with self._lock:
            record = self._unsettled(job_id)
            if record is None:
                return False
            record.job.progress = progress
            record.updated_at = utcnow()
        self._changes.notify(job_id)
        return True

    def update(self, job: Job) -> bool:
        return self.update_many([job])[0]

    def update_many(self, jobs: Sequence[Job]) -> list[bool]:
        written = [_own(job) for job in jobs]
        with self._lock:
            done = [self._update(job, utcnow()) for job in written]
        for job, changed in zip(written, done, strict=True):
            if changed:
                self._changes.notify(str(job.id))
        return done

    def _update(self, written: Job, now: datetime) -> bool:
        """Write one job's mutable fields unless it is settled (the lock is held)."""
        record = self._unsettled(str(written.id))
        if record is None:
            return False
        changes = {name: getattr(written, name) for name in _WRITTEN}
        record.job = record.job.model_copy(update=changes)
        record.updated_at = now
        return True

    def _apply(
        self,
        transition: Transition,
        job_ids: list[str] | None,
        stale_before: datetime | None,
        given: dict[str, Any],
    ) -> list[Job]:
        now = utcnow()
        cutoff = _utc(stale_before)
        with self._lock:
            candidates: Iterable[_Record | None] = (
                list(self._records.values())
                if job_ids is None
                else [self._records.get(job_id) for job_id in job_ids]
            )
            changed = [
                record.job.snapshot()
                for record in candidates
                if record is not None and _transit(record, transition, cutoff, given, now)
            ]
        for job in changed:
            self._changes.notify(str(job.id))
        return changed

    def watch(self, job_id: str) -> Watch:
        return self._changes.watch(job_id)

    def cancelled_among(self, job_ids: Sequence[str]) -> set[str]:
        with self._lock:
            return {
                job_id
                for job_id in job_ids
                if (record := self._records.get(job_id)) is not None
                and record.job.state is JobState.CANCELLED
            }

    def _find_many(self, options: JobListOptions) -> JobList:
        with self._lock:
            page = list_jobs((record.job for record in self._records.values()), options)
            return JobList(
                items=[job.snapshot() for job in page.items], total_items=page.total_items
            )

    def find_many_by_id(self, ids: Sequence[str]) -> list[Job]:
        with self._lock:
            found = (self._records.get(job_id) for job_id in dict.fromkeys(ids))
            return [record.job.snapshot() for record in found if record is not None]

    def queue_counts(self) -> dict[str, dict[JobState, int]]:
        counts: dict[str, dict[JobState, int]] = {}
        with self._lock:
            for record in self._records.values():
                by_state = counts.setdefault(record.job.queue_name, dict.fromkeys(JobState, 0))
                by_state[record.job.state] += 1
        return counts

    def remove_settled(
        self, queue_names: Sequence[str] | None = None, older_than: datetime | None = None
    ) -> int:
        cutoff = _utc(older_than) or utcnow()
        wanted = set(queue_names or ())
        with self._lock:
            removed = [
                job_id
                for job_id, record in self._records.items()
                if _settled_before(record.job, cutoff)
                and (not wanted or record.job.queue_name in wanted)
            ]
            for job_id in removed:
                del self._records[job_id]
        return len(removed)

    def record_dead_letter(self, letter: DeadLetter) -> None:
        kept = letter.model_copy(deep=True)
        with self._lock:
            self._dead_letters.appendleft(kept)
            while len(self._dead_letters) > self.max_dead_letters:
                self._dead_letters.pop()

    def dead_letters(self, take: int = 100) -> list[DeadLetter]:
        with self._lock:
            latest = list(islice(self._dead_letters, max(take, 0)))
        return [letter.model_copy(deep=True) for letter in latest]

    def take_due(self, now: datetime, limit: int) -> list[Job]:
        with self._lock:
            due = sorted(
                (record.due, job_id)
                for job_id, record in self._records.items()
                if record.due is not None
                and record.due <= now
                and record.job.state in WAITING_STATES
            )[:limit]
            taken = []
            for _, job_id in due:
                record = self._records[job_id]
                record.due = None
                taken.append(record.job.snapshot())
        return taken

    def mark_due(self, job_id: str, ready_at: datetime) -> Job | None:
        with self._lock:
            record = self._records.get(job_id)
            if record is None or record.job.state not in WAITING_STATES:
                return None
            record.job.ready_at = record.due = ready_at.astimezone(UTC)
            record.updated_at = utcnow()
            return record.job.snapshot()

    def add_unique(self, job: Job, *, replace: bool) -> tuple[Job, bool]:
        with self._lock:
            for record in self._records.values():
                held = record.job
                if (
                    held.unique_key == job.unique_key
                    and held.queue_name == job.queue_name
                    and held.state in WAITING_STATES
                ):
                    if replace:
                        held.data = job.data
                        held.ready_at = record.due = _utc(job.ready_at)
                        record.updated_at = utcnow()
                    return held.snapshot(), False
            if str(job.id) in self._records:
                raise DuplicateJobError(f"a job with id {job.id!r} already exists")
            return self._record(job, utcnow()).job.snapshot(), True

    def _record(self, job: Job, now: datetime) -> _Record:
        """Keep a private copy of ``job``, due-marked if it has ``ready_at`` (the lock is held)."""
        record = _Record(_own(job), now)
        record.due = record.job.ready_at
        self._records[str(job.id)] = record
        return record

    def _unsettled(self, job_id: str) -> _Record | None:
        """Return the record of ``job_id`` unless it is unknown or settled (the lock is held)."""
        record = self._records.get(job_id)
        return None if record is None or record.job.settled_at is not None else record


def _transit(
    record: _Record,
    transition: Transition,
    stale_before: datetime | None,
    given: Mapping[str, Any],
    now: datetime,
) -> bool:
    """Apply ``transition`` to an unsettled record; return whether it changed."""
    if record.job.settled_at is not None:
        return False
    stale = stale_before is not None and record.updated_at < stale_before
    if not record.job.apply(transition, stale=stale, now=now, **given):
        return False
    record.updated_at = now
    return True


def _settled_before(job: Job, cutoff: datetime) -> bool:
    """Tell whether ``job`` is settled, and was settled before ``cutoff``."""
    return job.is_settled and job.settled_at is not None and job.settled_at < cutoff


def _own(job: Job) -> Job:
    """Return a private copy of ``job`` with its times in UTC."""
    copied = job.snapshot()
    for name in _TIMES:
        value = getattr(copied, name)
        if value is not None:
            setattr(copied, name, value.astimezone(UTC))
    return copied


def _utc(value: datetime | None) -> datetime | None:
    """Return ``value`` timezone-aware; a naive time is UTC, as everywhere in the adapter."""
    if value is None or value.tzinfo is not None:
        return value
    return value.replace(tzinfo=UTC)


#: The stores of this process by name: every opener of ``memory://name`` shares one.
_named: dict[str, MemoryJobStore] = {}
_named_lock = ForkSafeLock()


def open_memory_store(url: str) -> MemoryJobStore:
    """Return this process's store named by ``url`` (``memory://name``), made on first use."""
    scheme, separator, name = url.partition("://")
    if scheme != SCHEME or not separator:
        raise ConfigurationError(f"malformed job store URL {url!r}: use {SCHEME}://name")
    with _named_lock:
        if name not in _named:
            _named[name] = MemoryJobStore(url)
        return _named[name]
