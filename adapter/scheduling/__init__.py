"""Scheduled tasks (Vendure 3.3's scheduler): functions the workers run on a cron schedule.

``task.py`` says what a task is and when its ticks fall; ``scheduler.py`` claims and runs
ticks (once per tick across every worker); ``info.py`` is what ``get_scheduled_tasks()``
lists. The state lives in the job store (``adapter.store.schedules``).
"""

from adapter.scheduling.info import ScheduledTaskInfo
from adapter.scheduling.scheduler import Scheduler
from adapter.scheduling.task import ScheduledRun, ScheduledTask

__all__ = ["ScheduledRun", "ScheduledTask", "ScheduledTaskInfo", "Scheduler"]
