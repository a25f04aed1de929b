"""Queue controls of the memory job store: dicts of this process behind one lock.

One ``MemoryQueueStore`` per ``MemoryJobStore`` (``beside``), so every strategy sharing a
memory store shares its queues too. A slot's liveness reads the job store's records (state,
last sign of life) while this store's lock is held; the job store never takes this lock.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass, field
from datetime import datetime

from adapter.control import ADMITTED, Admission, QueueControl, decide, slot_alive
from adapter.forksafe import ForkSafeLock
from adapter.store.memory import MemoryJobStore
from adapter.store.queues import ControlChange, QueueStore

_beside: weakref.WeakKeyDictionary[MemoryJobStore, MemoryQueueStore] = weakref.WeakKeyDictionary()
_beside_lock = ForkSafeLock()


@dataclass
class _Queue:
    control: QueueControl = field(default_factory=QueueControl)
    #: job id -> when its slot was admitted
    slots: dict[str, datetime] = field(default_factory=dict)
    #: recent starts: job id, seconds since the epoch
    starts: list[tuple[str, float]] = field(default_factory=list)


class MemoryQueueStore(QueueStore):
    """Queue controls in this process, for the memory job store."""

    def __init__(self, jobs: MemoryJobStore) -> None:
        self._jobs = jobs
        self._lock = ForkSafeLock()
        self._queues: dict[str, _Queue] = {}

    @classmethod
    def beside(cls, jobs: MemoryJobStore) -> MemoryQueueStore:
        """Return the one queue store of ``jobs``, made on first use."""
        with _beside_lock:
            found = _beside.get(jobs)
            if found is None:
                found = _beside[jobs] = cls(jobs)
            return found

    def control(self, queue_name: str) -> QueueControl:
        with self._lock:
            queue = self._queues.get(queue_name)
            return QueueControl() if queue is None else queue.control

    def controls(self) -> dict[str, QueueControl]:
        with self._lock:
            return {
                name: queue.control
                for name, queue in self._queues.items()
                if not queue.control.is_default
            }

    def _update(self, queue_name: str, change: ControlChange) -> QueueControl:
        with self._lock:
            queue = self._queues.setdefault(queue_name, _Queue())
            queue.control = change(queue.control)
            return queue.control

    def admit(
        self, queue_name: str, job_id: str, now: datetime, alive_since: datetime
    ) -> Admission:
        with self._lock:
            queue = self._queues.get(queue_name)
            if queue is None or queue.control.is_default:
                return ADMITTED
            now_s = now.timestamp()
            rate = queue.control.rate
            if rate is not None:
                cutoff = now_s - rate.counted_s
                queue.starts = [start for start in queue.starts if start[1] > cutoff]
            queue.slots = {
                held: at
                for held, at in queue.slots.items()
                if self._slot_alive(held, at, alive_since, now)
            }
            others = len(queue.slots) - (job_id in queue.slots)
            newest = sorted((at for _, at in queue.starts), reverse=True)
            count = rate.count if rate is not None else 0
            answer = decide(
                queue.control,
                now_s=now_s,
                started=len(newest),
                nth_newest_s=newest[count - 1] if 0 < count <= len(newest) else None,
                live_slots=others,
                has_slot=job_id in queue.slots,
            )
            if answer.run:
                if rate is not None:
                    queue.starts.append((job_id, now_s))
                if answer.holds_slot:
                    queue.slots[job_id] = now
            return answer

    def _slot_alive(
        self, job_id: str, admitted_at: datetime, alive_since: datetime, now: datetime
    ) -> bool:
        """The rule of ``adapter.control``: unsettled, and admitted or beating recently."""
        with self._jobs._lock:
            record = self._jobs._records.get(job_id)
            if record is None:
                return slot_alive(None, None, False, admitted_at, alive_since=alive_since, now=now)
            return slot_alive(
                record.job.state.value,
                record.updated_at,
                record.job.is_settled,
                admitted_at,
                alive_since=alive_since,
                now=now,
            )

    def started(
        self, queue_name: str, job_id: str, admitted_at: datetime, started_at: datetime
    ) -> None:
        with self._lock:
            queue = self._queues.get(queue_name)
            if queue is None:
                return
            counted = (job_id, admitted_at.timestamp())
            queue.starts = [
                (job_id, started_at.timestamp()) if start == counted else start
                for start in queue.starts
            ]

    def release(self, queue_name: str, job_id: str) -> None:
        with self._lock:
            queue = self._queues.get(queue_name)
            if queue is not None:
                queue.slots.pop(job_id, None)
