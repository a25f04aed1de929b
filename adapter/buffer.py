"""Job buffers: hold back jobs as they are added, then enqueue them reduced on ``flush``.

Vendure's job buffering (reference §7). A ``JobBuffer`` decides which jobs it collects and how
the collected jobs are reduced (merged, de-duplicated) at flush time. Collected jobs wait in a
``JobBufferStorage``:

- ``InMemoryJobBufferStorage``: in this process only; lost when it exits.
- ``SqlJobBufferStorage(url)`` (``adapter.store.sql.buffers``): in one SQL table of any
  SQLAlchemy URL; buffered jobs survive a restart. It is importable from here too, on first use,
  so that importing this module imports no SQLAlchemy.

``JobBufferService`` is the registry the JobQueueService delegates to.
"""

from __future__ import annotations

import logging
import threading
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from adapter.errors import ConfigurationError
from adapter.job import Job
from adapter.strategy import JobQueueStrategy

if TYPE_CHECKING:
    from adapter.store.sql.buffers import SqlJobBufferStorage as SqlJobBufferStorage

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


def __getattr__(name: str) -> Any:
    """Import ``SqlJobBufferStorage`` from the SQL store package when first asked for."""
    if name == "SqlJobBufferStorage":
        from adapter.store.sql.buffers import SqlJobBufferStorage

        return SqlJobBufferStorage
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
