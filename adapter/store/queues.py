"""Queue-level state beside a job store: each queue's controls, concurrency slots, recent starts.

``QueueStore`` is the contract; each job store has one (``queue_store_for``), kept in its own
tables or keys so the job layout needs no migration: SQL tables ``adapter_queue``,
``adapter_queue_slot`` and ``adapter_queue_start`` (``adapter.store.sql.queues``), Redis keys
``{prefix}:queue:<name>`` (a hash), ``:slots`` (a hash) and ``:starts`` (a sorted set)
(``adapter.store.redis.queues``), and a dict in memory (``adapter.store.memory_queues``).
The gate's rules are ``adapter.control.decide``; ``admit`` applies them atomically for one
queue (a SQL row lock, one Lua script, one lock in memory).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from datetime import datetime

from adapter.control import UNCHANGED, Admission, QueueControl, Unchanged
from adapter.job import validate_queue_name
from adapter.store.base import JobStore

#: A change of stored controls: the stored ones in, the new ones out.
ControlChange = Callable[[QueueControl], QueueControl]


class QueueStore(ABC):
    """The stored controls of queues and the gate every attempt passes."""

    @abstractmethod
    def control(self, queue_name: str) -> QueueControl:
        """Return the controls of ``queue_name`` (the defaults when none are stored)."""

    @abstractmethod
    def controls(self) -> dict[str, QueueControl]:
        """Return the controls of every queue that has some stored."""

    def set_control(
        self,
        queue_name: str,
        *,
        paused: bool | Unchanged = UNCHANGED,
        concurrency: int | Unchanged | None = UNCHANGED,
        rate_limit: str | Unchanged | None = UNCHANGED,
    ) -> QueueControl:
        """Change the given controls of ``queue_name`` (each checked first); return them all."""
        validate_queue_name(queue_name)
        return self._update(
            queue_name,
            lambda found: found.changed(
                paused=paused, concurrency=concurrency, rate_limit=rate_limit
            ),
        )

    @abstractmethod
    def _update(self, queue_name: str, change: ControlChange) -> QueueControl:
        """Replace the controls of ``queue_name`` by ``change(stored)`` atomically; return them."""

    @abstractmethod
    def admit(
        self, queue_name: str, job_id: str, now: datetime, alive_since: datetime
    ) -> Admission:
        """Decide whether the attempt of ``job_id`` may start now, recording it when it may.

        ``alive_since``: the oldest heartbeat (and slot admission) still counted as alive.
        """

    @abstractmethod
    def started(
        self, queue_name: str, job_id: str, admitted_at: datetime, started_at: datetime
    ) -> None:
        """Move the start of ``job_id`` counted at ``admitted_at`` to its claim's ``started_at``."""

    @abstractmethod
    def release(self, queue_name: str, job_id: str) -> None:
        """Free the concurrency slot of ``job_id``'s attempt (nothing when it holds none)."""

    def close(self) -> None:  # noqa: B027 - optional for stores without connections
        """Release connections."""


def queue_store_for(store: JobStore) -> QueueStore:
    """Return the queue store kept beside ``store`` (its own tables or keys)."""
    from adapter.store.memory import MemoryJobStore

    if isinstance(store, MemoryJobStore):
        from adapter.store.memory_queues import MemoryQueueStore

        return MemoryQueueStore.beside(store)
    from adapter.store.redis.store import RedisJobStore

    if isinstance(store, RedisJobStore):
        from adapter.store.redis.queues import RedisQueueStore

        return RedisQueueStore(store)
    from adapter.store.sql.store import SqlJobStore

    if isinstance(store, SqlJobStore):
        from adapter.store.sql.queues import SqlQueueStore

        return SqlQueueStore(store)
    raise TypeError(f"no queue store for {type(store).__name__}")
