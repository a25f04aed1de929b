"""The scheduled-task calls of ``JobQueueService`` (Vendure's ``SchedulerService``).

A mixin, so the service gains them with one line: they reach the strategy's ``scheduler``
(``CeleryJobQueueStrategy.scheduler``), which every process of the app has; only workers run
the tasks, any process may list them, ask for a run or disable one.
"""

from __future__ import annotations

from typing import Any

from adapter.errors import ConfigurationError
from adapter.scheduling.info import ScheduledTaskInfo
from adapter.scheduling.scheduler import Scheduler
from adapter.scheduling.task import ScheduledTask


class ScheduledTasks:
    """``add_scheduled_task``, ``get_scheduled_tasks``, ``run_scheduled_task``, ``update_...``."""

    strategy: Any

    @property
    def scheduler(self) -> Scheduler:
        """The strategy's scheduler; ConfigurationError when the strategy has none."""
        scheduler = getattr(self.strategy, "scheduler", None)
        if not isinstance(scheduler, Scheduler):
            raise ConfigurationError(
                f"{type(self.strategy).__name__} runs no scheduled tasks "
                "(use CeleryJobQueueStrategy)"
            )
        return scheduler

    def add_scheduled_task(self, task: ScheduledTask) -> None:
        """Register ``task``: declare it in every process, as queues are; workers run it."""
        self.scheduler.add(task)

    def get_scheduled_tasks(self) -> list[ScheduledTaskInfo]:
        """Every registered task: schedule, in words, last and next run, running, enabled."""
        return self.scheduler.tasks()

    def run_scheduled_task(self, task_id: str) -> None:
        """Ask for one run now, off schedule; a worker runs it within its poll interval."""
        self.scheduler.run_now(task_id)

    def update_scheduled_task(self, task_id: str, *, enabled: bool) -> ScheduledTaskInfo:
        """Enable or disable the task's ticks, for every worker."""
        return self.scheduler.update(task_id, enabled=enabled)
