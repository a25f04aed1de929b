"""Adding jobs: every job checked first, published and recorded PENDING, never half-written.

- ``add`` publishes one Celery task message, ``adapter.run_job`` with ``task_id == job.id``, on
  the celery queue of the job's queue name (``adapter.celery.publish``), and records the job
  PENDING in the store. A job given no id is recorded after its publish, in a batch
  (``adapter.celery.write_behind``, which bounds the lag): this process reads it as soon as
  ``add`` returns, other processes milliseconds later or once ``flush()`` returns. A job with
  an id or an idempotency key is recorded first, and removed if publishing fails. Either way
  nothing is half-written: a job whose message was refused is not in the store, and ``add``
  raises ``PublishError``.
- ``add_many`` checks every job first (``adapter.bulk``), then publishes the messages back to
  back on one producer per celery queue (``JobPublisher.publish_many``; one pipeline on Redis)
  and hands the batch to the write-behind, which records it in one store write.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterable
from typing import Protocol

from adapter.bulk import checked_batch
from adapter.celery.publish import JobPublisher
from adapter.celery.write_behind import WriteBehind
from adapter.data import check_data_size
from adapter.deadlines import check_timeout
from adapter.errors import BulkPublishError, DuplicateJobError, InvalidJobError, PublishError
from adapter.job import Job, added_fields, check_fields
from adapter.metrics.recorder import MetricsRecorder, NoMetrics
from adapter.store import JobStore
from adapter.subscribable import SubscribableJob
from adapter.timing import NO_TIMING, Timing

#: Namespace of the job ids derived from idempotency keys.
IDEMPOTENCY_NAMESPACE = uuid.UUID("5b1f7c1e-6a51-4a8e-9d2b-0c7e3f0a9e11")


class Finder(Protocol):
    """Looks a job up as the strategy shows it (``CeleryJobQueueStrategy.find_one``)."""

    def find_one(self, job_id: str) -> SubscribableJob | None:
        """Return the job as stored now, able to follow its updates, or None."""


class JobAdder:
    """Adds jobs to ``store`` and the broker, for one strategy."""

    def __init__(
        self,
        store: JobStore,
        publisher: JobPublisher,
        write_behind: WriteBehind,
        max_data_bytes: int,
        *,
        finder: Finder,
        metrics: MetricsRecorder | None = None,
    ) -> None:
        """``finder`` looks jobs up and is what returned jobs read their updates from."""
        self._metrics = metrics or NoMetrics()
        self._store = store
        self._publisher = publisher
        self._write_behind = write_behind
        self.max_data_bytes = max_data_bytes
        self._finder = finder

    def _stored(self) -> JobStore:
        """The store, with this process's waiting adds written first."""
        self._write_behind.write_waiting()
        return self._store

    def add(
        self,
        job: Job,
        *,
        idempotency_key: str | None = None,
        timing: Timing = NO_TIMING,
        timeout: float | None = None,
    ) -> SubscribableJob:
        """Publish ``job``; with ``idempotency_key``, a repeated add returns the first job.

        A job without an id gets a new one, a UUIDv7. The key (unique per queue) becomes the
        job's id instead, so adding it again, from any process, publishes nothing and returns
        the job as it is now. A field out of its range (``adapter.job.FIELD_RANGES``) raises
        InvalidJobError or InvalidQueueNameError, and nothing is published.
        ``timing`` (``adapter.timing``) sets when it runs; a job with ``ready_at`` is recorded
        and published later by a worker, one with ``unique_key`` may return a waiting job.
        ``timeout`` (seconds per attempt: ``adapter.deadlines``) becomes the job's ``timeout``
        field, stored and carried by every message of the job (ValueError naming it when bad).
        """
        timeout = check_timeout(timeout)
        job = timing.apply(job)
        if timeout is not None:
            job = job.model_copy(update={"timeout": timeout})
        check_fields(job)  # again: the job may have changed since it was built
        check_data_size(job.data, self.max_data_bytes)
        job_id = job.id or _new_job_id()
        if idempotency_key is not None:
            job_id = str(uuid.uuid5(IDEMPOTENCY_NAMESPACE, f"{job.queue_name}\0{idempotency_key}"))
            existing = self._finder.find_one(job_id)
            if existing is not None:
                return existing
        added = job.as_added(job_id)
        if added.unique_key is not None or added.ready_at is not None:
            return self._add_scheduled(added, replace=timing.replace)
        if job.id is None and idempotency_key is None:
            # A fresh id is in no store yet: publish first, then record the job in the next
            # batch instead of paying a store round trip per add.
            self._publisher.publish(added)
            self._write_behind.add(added)
            self._metrics.added([added])
            return SubscribableJob.wrap(added, self._finder)
        try:
            self._stored().insert(added)
        except DuplicateJobError:
            existing = self._finder.find_one(job_id) if idempotency_key is not None else None
            if existing is None:
                raise
            return existing  # another process added the same key first
        try:
            self._publisher.publish(added)
        except PublishError:
            assert added.id is not None
            self._stored().delete(added.id)
            raise
        self._metrics.added([added])
        return SubscribableJob.wrap(added, self._finder)

    def _add_scheduled(self, added: Job, *, replace: bool) -> SubscribableJob:
        """Record a unique or delayed job first; publish it now only if it is ready now."""
        store = self._stored()
        if added.unique_key is not None:
            stored, inserted = store.add_unique(added, replace=replace)
            if not inserted:
                return SubscribableJob.wrap(stored, self._finder)
        else:
            store.insert(added)
        if added.ready_at is None:  # else the promoter publishes it (adapter.store.scheduling)
            try:
                self._publisher.publish(added)
            except PublishError:
                store.delete(str(added.id))
                raise
        return SubscribableJob.wrap(added, self._finder)

    def add_many(self, jobs: Iterable[Job], timing: Timing = NO_TIMING) -> list[SubscribableJob]:
        """Publish many new jobs at once; return them with their ids, in order, PENDING.

        Every job is checked first, as ``add`` checks one: the first bad one raises, naming its
        index (``jobs[3]: ...``), and nothing is published or stored. The messages then go back
        to back on one producer per celery queue (one Redis pipeline), and the jobs are
        recorded in one store write (``WriteBehind``). A job may carry its own id, which must
        be in no stored job (DuplicateJobError naming its index); there are no idempotency
        keys here (use ``add``). BulkPublishError when the broker refuses a message: it names
        that job's index, and the jobs published before it are recorded.
        """
        if timing.unique_key is not None or timing.debounce is not None:
            raise InvalidJobError("add_many takes no unique_key or debounce: use add")
        batch = checked_batch((timing.apply(job) for job in jobs), self.max_data_bytes)
        if not batch:
            return []
        for index, job in enumerate(batch):
            if job.unique_key is not None:
                raise InvalidJobError(f"jobs[{index}]: add_many takes no unique_key: use add")
        self._check_ids_free(batch)
        new_ids = iter(_new_job_ids(sum(job.id is None for job in batch)))
        added = [
            SubscribableJob.wrap(job, self._finder, **added_fields(job.id or next(new_ids)))
            for job in batch
        ]
        # Jobs with ready_at are recorded now and only: the promoter publishes them when due
        # (the store is their only copy, so not left to the write-behind).
        delayed = [Job.from_fields({**job.__dict__}) for job in added if job.ready_at is not None]
        if delayed:
            self._stored().insert_many(delayed)
        ready = [index for index, job in enumerate(added) if job.ready_at is None]
        try:
            self._publisher.publish_many([added[index] for index in ready])
        except BulkPublishError as err:  # its indexes count the ready jobs only
            sent = [added[ready[index]] for index in err.published]
            self._write_behind.add(*sent)
            self._metrics.added(sent)
            raise
        self._write_behind.add(*(added[index] for index in ready))
        self._metrics.added(added)
        return added

    def _check_ids_free(self, batch: list[Job]) -> None:
        """Raise DuplicateJobError, naming its index, for a given id a stored job has."""
        given = {job.id: index for index, job in enumerate(batch) if job.id is not None}
        taken = self._stored().find_many_by_id(list(given)) if given else []
        if taken:
            job_id = taken[0].id or ""
            raise DuplicateJobError(
                f"jobs[{given[job_id]}]: a job with id {job_id!r} exists already"
            )


def _new_job_id() -> str:
    """Return a new UUIDv7 (``_new_job_ids``)."""
    return _new_job_ids(1)[0]


def _new_job_ids(count: int) -> list[str]:
    """Return ``count`` new UUIDv7s (RFC 9562): random, but ordered by time of creation.

    SQL stores then add each new job at the end of their id index, instead of at a random
    place as with UUIDv4: a batch of inserts changes a few pages, not one page per job.
    One read of the clock and of ``os.urandom`` serves them all (``add_many``); ids of the
    same millisecond are in random order, as when made one by one.
    """
    stamp = (time.time_ns() // 1_000_000) << 80 | 0x7 << 76 | 0b10 << 62
    random = os.urandom(10 * count)  # 74 of each 80 bits are used
    ids = []
    for start in range(0, 10 * count, 10):
        rand = int.from_bytes(random[start : start + 10])
        text = f"{stamp | (rand >> 68) << 64 | rand & _RAND_B:032x}"
        ids.append(f"{text[:8]}-{text[8:12]}-{text[12:16]}-{text[16:20]}-{text[20:]}")
    return ids


#: The 62 random bits of a UUIDv7's last 64 (after its variant).
_RAND_B = (1 << 62) - 1
