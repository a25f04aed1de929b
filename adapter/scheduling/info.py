"""What ``get_scheduled_tasks()`` lists: a task's definition beside its state in the store."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from adapter.scheduling.task import ScheduledTask
from adapter.store.schedules import TaskRecord


@dataclass(frozen=True)
class ScheduledTaskInfo:
    """One scheduled task as listed (Vendure's ``ScheduledTask`` in the admin API)."""

    id: str
    schedule: str
    #: The schedule in words (cron-descriptor): ``"At 03:00 AM"``.
    schedule_description: str
    description: str
    enabled: bool
    #: True while a run holds a live lease.
    running: bool
    last_run_at: datetime | None
    last_finished_at: datetime | None
    last_result: Any
    last_error: str | None
    #: The next tick; None while disabled.
    next_run_at: datetime | None
    prevent_overlap: bool
    timeout: float | None

    def to_dict(self) -> dict[str, Any]:
        """Return it as JSON-ready camelCase, as Vendure's admin API shows it."""
        fields = asdict(self)
        for name in ("last_run_at", "last_finished_at", "next_run_at"):
            fields[name] = fields[name] and fields[name].isoformat()
        return {_camel(name): value for name, value in fields.items()}


def task_info(task: ScheduledTask, record: TaskRecord | None, now: datetime) -> ScheduledTaskInfo:
    """Combine ``task`` and its stored ``record`` (None: not registered yet) at ``now``."""
    record = record or TaskRecord(task.id)
    return ScheduledTaskInfo(
        id=task.id,
        schedule=task.schedule,
        schedule_description=task.parsed.describe(),
        description=task.description,
        enabled=record.enabled,
        running=record.running(now),
        last_run_at=record.last_started_at,
        last_finished_at=record.last_finished_at,
        last_result=None if record.last_result is None else json.loads(record.last_result),
        last_error=record.last_error,
        next_run_at=task.parsed.next_after(now) if record.enabled else None,
        prevent_overlap=task.prevent_overlap,
        timeout=task.timeout,
    )


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)
