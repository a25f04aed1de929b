"""``tests.integration.worker_app`` plus scheduled tasks, for ``celery -A`` in scheduler tests.

TEST_TICK_LOG: file each run appends ``start|end TASK TICK PID`` lines to (``OVERLAP`` when a
run of a task starts while another run of it is going, seen through a marker file).
TEST_TICK_TASKS: ``ID=SCHEDULE=NAP`` entries, comma-separated; NAP seconds per run, or
``block-once``: the first run of the task (among all workers) blocks until killed.
TEST_CLOCK_SKEW_S: seconds this worker's scheduler clock is ahead (negative: behind).
"""

from __future__ import annotations

import os
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

from adapter.scheduling import ScheduledRun, ScheduledTask
from tests.integration.worker_app import app, strategy

__all__ = ["app"]


def _say(line: str) -> None:
    with open(os.environ["TEST_TICK_LOG"], "a") as log:
        log.write(line + "\n")


def _runner(nap: str) -> Any:
    def run(scheduled: ScheduledRun) -> str:
        tick = scheduled.tick.isoformat() if scheduled.tick else "now"
        marker = Path(os.environ["TEST_TICK_LOG"] + f".{scheduled.task_id}.running")
        try:
            os.close(os.open(marker, os.O_CREAT | os.O_EXCL))
        except FileExistsError:
            _say(f"OVERLAP {scheduled.task_id} {tick} {os.getpid()}")
        _say(f"start {scheduled.task_id} {tick} {os.getpid()}")
        if nap == "block-once":
            first = Path(os.environ["TEST_TICK_LOG"] + f".{scheduled.task_id}.blocked")
            try:
                os.close(os.open(first, os.O_CREAT | os.O_EXCL))
                time.sleep(300)  # until the test kills this worker
            except FileExistsError:
                pass
        else:
            time.sleep(float(nap))
        marker.unlink(missing_ok=True)
        _say(f"end {scheduled.task_id} {tick} {os.getpid()}")
        return tick

    return run


for entry in filter(None, os.environ.get("TEST_TICK_TASKS", "").split(",")):
    task_id, schedule, nap = entry.split("=")
    strategy.scheduler.add(ScheduledTask(id=task_id, schedule=schedule, execute=_runner(nap)))

if os.environ.get("TEST_CLOCK_SKEW_S"):
    skew = timedelta(seconds=float(os.environ["TEST_CLOCK_SKEW_S"]))
    store_clock = strategy.store.schedules.now
    strategy.scheduler.clock = lambda: store_clock() + skew
