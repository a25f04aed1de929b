"""In-memory scheduled-task store, beside a ``MemoryJobStore``: this process only, for tests.

One lock guards the records and histories. Retention goes through the job store's own listing
and ``delete`` (the memory store is small by nature).
"""

from __future__ import annotations

import dataclasses
from collections import deque
from collections.abc import Callable
from datetime import datetime
from typing import Any

from adapter.forksafe import ForkSafeLock
from adapter.job import utcnow
from adapter.listing import MAX_TAKE
from adapter.retention import EACH_QUEUE, RetentionRule
from adapter.store.base import JobStore
from adapter.store.schedules import Claim, RunRecord, ScheduleStore, TaskRecord


class MemoryScheduleStore(ScheduleStore):
    """Scheduled-task records in a dict of this process."""

    def __init__(self, jobs: JobStore, clock: Callable[[], datetime] = utcnow) -> None:
        """Keep task state here; apply retention to ``jobs``; ``clock`` is the store's clock."""
        self._jobs = jobs
        self._clock = clock
        self._lock = ForkSafeLock()
        self._records: dict[str, TaskRecord] = {}
        self._history: dict[str, deque[RunRecord]] = {}

    def now(self) -> datetime:
        return self._clock()

    def register(self, task_id: str, last_tick: datetime) -> None:
        with self._lock:
            self._records.setdefault(task_id, TaskRecord(task_id, last_tick=last_tick))

    def claim(self, claim: Claim) -> bool:
        tick = claim.tick
        with self._lock:
            record = self._records.get(claim.task_id)
            if record is None or (claim.exclusive and record.running(claim.now)):
                return False
            if tick is None:
                if record.run_requested_at is None:
                    return False
            elif not record.enabled or (record.last_tick and record.last_tick >= tick):
                return False
            self._records[claim.task_id] = dataclasses.replace(
                record,
                lease_owner=claim.owner,
                lease_until=claim.lease_until,
                last_started_at=claim.now,
                last_tick=record.last_tick if tick is None else tick,
                run_requested_at=record.run_requested_at if tick is not None else None,
            )
            return True

    def renew(self, task_id: str, owner: str, lease_until: datetime) -> bool:
        with self._lock:
            record = self._records.get(task_id)
            if record is None or record.lease_owner != owner:
                return False
            self._records[task_id] = dataclasses.replace(record, lease_until=lease_until)
            return True

    def finish(self, run: RunRecord, keep: int) -> None:
        with self._lock:
            record = self._records.get(run.task_id)
            if record is None:
                return
            if record.lease_owner == run.owner:
                record = dataclasses.replace(record, lease_owner=None, lease_until=None)
            self._records[run.task_id] = dataclasses.replace(
                record,
                last_started_at=run.started_at,
                last_finished_at=run.finished_at,
                last_result=run.result,
                last_error=run.error,
            )
            history = self._history.setdefault(run.task_id, deque())
            history.appendleft(run)
            while len(history) > keep:
                history.pop()

    def set_enabled(self, task_id: str, enabled: bool) -> bool:
        return self._change(task_id, enabled=enabled)

    def request_run(self, task_id: str, now: datetime) -> bool:
        return self._change(task_id, run_requested_at=now)

    def _change(self, task_id: str, **changes: object) -> bool:
        with self._lock:
            record = self._records.get(task_id)
            if record is not None:
                self._records[task_id] = dataclasses.replace(record, **changes)  # type: ignore[arg-type]
            return record is not None

    def records(self) -> dict[str, TaskRecord]:
        with self._lock:
            return dict(self._records)

    def history(self, task_id: str, take: int = 100) -> list[RunRecord]:
        with self._lock:
            return list(self._history.get(task_id, ()))[:take]

    def apply_retention(self, rule: RetentionRule, now: datetime) -> int:
        queues = (
            list(self._jobs.queue_counts()) if rule.queue_name == EACH_QUEUE else [rule.queue_name]
        )
        removed = 0
        for queue in queues:
            where: dict[str, Any] = {"queueName": {"eq": queue}, "state": {"eq": rule.state.value}}
            if rule.keep is not None:
                removed += self._delete_all(where, skip=rule.keep)
            if rule.max_age is not None:
                removed += self._delete_all({**where, "createdAt": {"before": now - rule.max_age}})
        return removed

    def _delete_all(self, where: dict[str, Any], skip: int = 0) -> int:
        """Delete the jobs ``where`` matches, past the newest ``skip``, a page at a time."""
        removed = 0
        while True:
            page = self._jobs.find_many(
                {"filter": where, "sort": {"createdAt": "DESC"}, "skip": skip, "take": MAX_TAKE}
            ).items
            for job in page:
                self._jobs.delete(str(job.id))
            removed += len(page)
            if not page:
                return removed
