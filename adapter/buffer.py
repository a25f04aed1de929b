"""Job buffers: hold back jobs as they are added, then enqueue them reduced on ``flush``.

Vendure's job buffering (reference §7). A ``JobBuffer`` decides which jobs it collects and how
the collected jobs are reduced (merged, de-duplicated) at flush time. Collected jobs wait in a
``JobBufferStorage``:

- ``InMemoryJobBufferStorage``: in this process only; lost when it exits.
- ``SqlJobBufferStorage(url)``: any SQLAlchemy URL, for example ``sqlite:////var/lib/app/
  buffer.sqlite3`` or ``postgresql+psycopg://user:pass@host/app``. Table ``adapter_job_buffer``
  is created on first use; buffered jobs survive a restart. A flush is one
  ``DELETE ... RETURNING``, so two processes flushing at once never enqueue a job twice.

``JobBufferService`` is the registry the JobQueueService delegates to.
"""

from __future__ import annotations

import json
import logging
import threading
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa

from adapter.errors import ConfigurationError
from adapter.job import Job, utcnow
from adapter.store.sql.engine import ProcessEngine
from adapter.strategy import JobQueueStrategy

logger = logging.getLogger(__name__)


class JobBuffer(ABC):
    """Collects some of the jobs being added and reduces them to fewer jobs at flush time."""

    #: Unique among the buffers registered with one service.
    id: str

    @abstractmethod
    def collect(self, job: Job) -> bool:
        """Return True to hold ``job`` back in this buffer instead of enqueueing it now."""

    @abstractmethod
    def reduce(self, jobs: list[Job]) -> list[Job]:
        """Return the jobs to enqueue in place of ``jobs`` (oldest first)."""


class JobBufferStorage(ABC):
    """Where collected jobs wait, per buffer id, until they are flushed."""

    @abstractmethod
    def add(self, buffer_id: str, job: Job) -> Job:
        """Store ``job`` under ``buffer_id`` and return it."""

    @abstractmethod
    def buffer_size(self, buffer_ids: Sequence[str]) -> dict[str, int]:
        """Return how many jobs each buffer holds (0 for an unknown id)."""

    @abstractmethod
    def flush(self, buffer_ids: Sequence[str]) -> dict[str, list[Job]]:
        """Remove and return each buffer's jobs, oldest first ([] for an unknown id)."""


class InMemoryJobBufferStorage(JobBufferStorage):
    """Buffered jobs in this process's memory."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._jobs: dict[str, list[Job]] = {}

    def add(self, buffer_id: str, job: Job) -> Job:
        with self._lock:
            self._jobs.setdefault(buffer_id, []).append(job.snapshot())
        return job

    def buffer_size(self, buffer_ids: Sequence[str]) -> dict[str, int]:
        with self._lock:
            return {buffer_id: len(self._jobs.get(buffer_id, [])) for buffer_id in buffer_ids}

    def flush(self, buffer_ids: Sequence[str]) -> dict[str, list[Job]]:
        with self._lock:
            return {buffer_id: self._jobs.pop(buffer_id, []) for buffer_id in buffer_ids}


_metadata = sa.MetaData()
_buffered = sa.Table(
    "adapter_job_buffer",
    _metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("buffer_id", sa.String(200), nullable=False, index=True),
    sa.Column("job", sa.Text, nullable=False),
    sa.Column("created_at", sa.DateTime, nullable=False),
)


class SqlJobBufferStorage(JobBufferStorage):
    """Buffered jobs in one SQL table, shared by every process using the same database."""

    def __init__(self, url: str) -> None:
        self._db = ProcessEngine(url, "job buffer", _metadata)
        self.url = self._db.url

    def _run(self, statement: Any) -> list[Any]:
        with self._db.begin() as conn:
            result = conn.execute(statement)
            return list(result.all()) if result.returns_rows else []

    def add(self, buffer_id: str, job: Job) -> Job:
        now = utcnow().replace(tzinfo=None)  # stored as naive UTC, as in the job store
        self._run(
            _buffered.insert().values(
                buffer_id=buffer_id, job=json.dumps(job.to_wire()), created_at=now
            )
        )
        return job

    def buffer_size(self, buffer_ids: Sequence[str]) -> dict[str, int]:
        counts = self._run(
            sa.select(_buffered.c.buffer_id, sa.func.count())
            .where(_buffered.c.buffer_id.in_(list(buffer_ids)))
            .group_by(_buffered.c.buffer_id)
        )
        found = {buffer_id: int(count) for buffer_id, count in counts}
        return {buffer_id: found.get(buffer_id, 0) for buffer_id in buffer_ids}

    def flush(self, buffer_ids: Sequence[str]) -> dict[str, list[Job]]:
        rows = self._run(
            _buffered.delete()
            .where(_buffered.c.buffer_id.in_(list(buffer_ids)))
            .returning(_buffered.c.id, _buffered.c.buffer_id, _buffered.c.job)
        )
        flushed: dict[str, list[Job]] = {buffer_id: [] for buffer_id in buffer_ids}
        for row in sorted(rows, key=lambda row: int(row.id)):
            flushed[row.buffer_id].append(Job.model_validate(json.loads(row.job)))
        return flushed

    def close(self) -> None:
        """Release connections."""
        self._db.dispose()


class JobBufferService:
    """The registered buffers: offers added jobs to them and enqueues what a flush reduces to."""

    def __init__(self, strategy: JobQueueStrategy, storage: JobBufferStorage) -> None:
        self._strategy = strategy
        self._storage = storage
        self._lock = threading.Lock()
        self._buffers: dict[str, JobBuffer] = {}

    def add_buffer(self, buffer: JobBuffer) -> None:
        """Register ``buffer``; raise ConfigurationError if its id is taken."""
        buffer_id = getattr(buffer, "id", None)
        if not isinstance(buffer_id, str) or not buffer_id:
            raise ConfigurationError(f"job buffer {buffer!r} needs a non-empty string id")
        with self._lock:
            if buffer_id in self._buffers:
                raise ConfigurationError(f"a job buffer with id {buffer_id!r} already exists")
            self._buffers[buffer_id] = buffer

    def remove_buffer(self, buffer: JobBuffer | str) -> None:
        """Unregister a buffer (given or by id); its stored jobs stay stored."""
        with self._lock:
            self._buffers.pop(buffer if isinstance(buffer, str) else buffer.id, None)

    def collectors(self, job: Job) -> list[str]:
        """Return the ids of the registered buffers that collect ``job``, in registration order."""
        with self._lock:
            buffers = list(self._buffers.values())
        return [buffer.id for buffer in buffers if buffer.collect(job)]

    def store(self, buffer_ids: Sequence[str], job: Job) -> None:
        """Store ``job`` in each of ``buffer_ids``."""
        for buffer_id in buffer_ids:
            self._storage.add(buffer_id, job)

    def buffer_size(self, *buffers: JobBuffer | str) -> dict[str, int]:
        """Return the size of the given buffers (ids or buffers), or of every registered one."""
        return self._storage.buffer_size(self._ids(buffers))

    def flush(self, *buffers: JobBuffer | str) -> list[Job]:
        """Empty the given buffers (or all registered) and enqueue what each reduces to.

        A failing ``reduce`` is logged and the unreduced jobs are enqueued. Jobs of an id no
        registered buffer has are dropped (Vendure's behaviour).
        """
        flushed = self._storage.flush(self._ids(buffers))
        with self._lock:
            registered = dict(self._buffers)
        added: list[Job] = []
        for buffer_id, jobs in flushed.items():
            buffer = registered.get(buffer_id)
            if buffer is None or not jobs:
                continue
            try:
                reduced = buffer.reduce(jobs)
            except Exception:
                logger.exception("job buffer %r failed to reduce; enqueueing its jobs", buffer_id)
                reduced = jobs
            added.extend(self._strategy.add(job) for job in reduced)
        return added

    def _ids(self, buffers: Sequence[JobBuffer | str]) -> list[str]:
        if not buffers:
            with self._lock:
                return list(self._buffers)
        return [item if isinstance(item, str) else item.id for item in buffers]
