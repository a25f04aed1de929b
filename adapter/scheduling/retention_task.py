"""The built-in scheduled task that applies the adapter_retention rules (``adapter.retention``)."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from adapter.retention import RetentionRule, RetentionStore, apply_rules
from adapter.scheduling.task import ScheduledTask

#: Id of the built-in scheduled task that applies the retention rules.
RETENTION_TASK_ID = "adapter.retention"


def retention_task(
    store: Callable[[], RetentionStore], rules: Iterable[RetentionRule], schedule: str
) -> ScheduledTask:
    """Return the built-in task that applies ``rules`` to ``store()`` on ``schedule``."""
    kept = tuple(rules)
    return ScheduledTask(
        id=RETENTION_TASK_ID,
        schedule=schedule,
        execute=lambda: {"removed": apply_rules(store(), kept)},
        description="removes settled jobs past the retention rules (adapter_retention)",
    )
