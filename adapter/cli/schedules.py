"""``jobqueue schedules``: list the scheduled tasks of ``--app``, run one now, enable, disable.

The tasks are the ones the module registers (as it starts queues); their state comes from the
job store, so the list shows what the workers did. ``run ID`` asks for a run: a worker of the
app runs it within its poll interval (this command does not wait for it).
"""

from __future__ import annotations

import argparse
from typing import TextIO

from adapter.celery import CeleryJobQueueStrategy
from adapter.cli.render import dumps, table
from adapter.errors import JobQueueError
from adapter.scheduling import ScheduledTaskInfo

HEADERS = ["ID", "SCHEDULE", "WHEN", "ENABLED", "RUNNING", "LAST RUN", "OUTCOME", "NEXT RUN"]


def schedules(args: argparse.Namespace, strategy: CeleryJobQueueStrategy, out: TextIO) -> int:
    """``schedules [run|enable|disable ID]``: list the tasks, or act on one and show it."""
    scheduler = strategy.scheduler
    if args.action is None:
        listed = scheduler.tasks()
    elif args.id is None:
        raise JobQueueError(f"schedules {args.action}: name the task (schedules {args.action} ID)")
    elif args.action == "run":
        scheduler.run_now(args.id)
        listed = [info for info in scheduler.tasks() if info.id == args.id]
    else:
        listed = [scheduler.update(args.id, enabled=args.action == "enable")]
    if args.json:
        out.write(dumps([info.to_dict() for info in listed]) + "\n")
        return 0
    if args.action == "run":
        out.write(f"asked for a run of {args.id}: a worker runs it within its poll interval\n")
    out.write(table(HEADERS, [_row(info) for info in listed]) + "\n")
    return 0


def _row(info: ScheduledTaskInfo) -> list[object]:
    outcome = f"error: {info.last_error}" if info.last_error else info.last_result
    return [
        info.id,
        info.schedule,
        info.schedule_description,
        "yes" if info.enabled else "no",
        "yes" if info.running else "no",
        info.last_run_at and info.last_run_at.isoformat(timespec="seconds"),
        outcome,
        info.next_run_at and info.next_run_at.isoformat(timespec="seconds"),
    ]
