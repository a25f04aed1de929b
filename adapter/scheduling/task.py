"""What a scheduled task is (Vendure 3.3's ``ScheduledTask``) and when its ticks fall.

A schedule is a cron expression of five fields (``"0 3 * * *"``), six with seconds first
(``"*/2 * * * * *"``, as Vendure's ``cron`` package reads it), or ``"every N seconds"``
(also ``"every 2s"``, ``"every 5m"``: ticks at whole multiples of N since 1970 UTC). Ticks are
computed in UTC by croniter; the human text comes from cron-descriptor.

A tick is named by its nominal time: the scheduler claims a tick by that name in the store,
so two workers that compute it at different moments, or with different clocks, name the same
tick and only one of them takes it (``adapter.scheduling.scheduler``).
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from cron_descriptor import get_description
from croniter import croniter

from adapter.errors import ScheduleError

#: Longest id of a scheduled task (the store's key column).
MAX_TASK_ID = 64
#: Default run time limit of a task, in seconds: a run that stalls frees its lease then.
DEFAULT_TIMEOUT_S = 3600.0
_EVERY = re.compile(r"every\s+(\d+(?:\.\d+)?)\s*(s|sec|secs|seconds?|m|min|minutes?)?", re.I)


@dataclass(frozen=True)
class Schedule:
    """When a task's ticks fall: a cron expression or a fixed interval."""

    expression: str
    _interval: float | None = field(default=None, repr=False, compare=False)

    @classmethod
    def parse(cls, expression: str) -> Schedule:
        """Check ``expression`` and return its schedule; ScheduleError says what is wrong."""
        text = expression.strip()
        every = _EVERY.fullmatch(text)
        if every:
            seconds = float(every.group(1)) * (60 if (every.group(2) or "s")[0] == "m" else 1)
            if seconds < 1:
                raise ScheduleError(f"schedule {expression!r}: the interval must be >= 1 second")
            return cls(text, seconds)
        if len(text.split()) not in (5, 6) or not croniter.is_valid(text, second_at_beginning=True):
            raise ScheduleError(
                f"schedule {expression!r} is not a cron expression (5 fields, or 6 with "
                "seconds first) nor 'every N seconds'"
            )
        return cls(text)

    def latest(self, now: datetime) -> datetime:
        """Return the last tick at or before ``now``."""
        if self._interval is not None:
            return _from_seconds(now.timestamp() // self._interval * self._interval)
        prev: datetime = croniter(self.expression, now, second_at_beginning=True).get_prev(datetime)
        following = self.next_after(prev)  # croniter's get_prev skips a tick equal to now
        return following if following <= now else prev.astimezone(UTC)

    def next_after(self, moment: datetime) -> datetime:
        """Return the first tick after ``moment``."""
        if self._interval is not None:
            return _from_seconds(
                (moment.timestamp() // self._interval + 1) * self._interval,
            )
        following: datetime = croniter(self.expression, moment, second_at_beginning=True).get_next(
            datetime
        )
        return following.astimezone(UTC)

    def describe(self) -> str:
        """Return the schedule in words: ``"At 03:00 AM"``, ``"Every 2 seconds"``."""
        if self._interval is not None:
            return f"Every {self._interval:g} seconds"
        return str(get_description(self.expression))


def _from_seconds(seconds: float) -> datetime:
    return datetime(1970, 1, 1, tzinfo=UTC) + timedelta(seconds=seconds)


@dataclass(frozen=True)
class ScheduledRun:
    """What a task's ``execute`` is told, when it takes an argument."""

    task_id: str
    #: The nominal time of the tick; None for a run asked for (``run_scheduled_task``).
    tick: datetime | None
    #: Who runs it: host, pid and a per-run suffix (the lease holder in the store).
    owner: str


@dataclass(frozen=True)
class ScheduledTask:
    """A function the workers run on a schedule, once per tick across all of them."""

    id: str
    schedule: str
    #: ``execute()`` or ``execute(run: ScheduledRun)``, plain or ``async``; its return value
    #: (JSON) is kept as the run's result, an exception's text as its error.
    execute: Callable[..., Any]
    #: Seconds a run may take; past them it is recorded as failed and its lease is freed (a
    #: Python thread cannot be stopped: it goes on, unseen). None: no limit.
    timeout: float | None = DEFAULT_TIMEOUT_S
    #: When true, a tick that comes while a run holds the lease is not run; the first tick
    #: after the run ends is.
    prevent_overlap: bool = True
    description: str = ""
    parsed: Schedule = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not self.id or len(self.id) > MAX_TASK_ID or not self.id.isprintable():
            raise ScheduleError(
                f"scheduled task id {self.id!r}: 1 to {MAX_TASK_ID} printable characters"
            )
        if not callable(self.execute):
            raise ScheduleError(f"scheduled task {self.id!r}: execute is not callable")
        if self.timeout is not None and self.timeout <= 0:
            raise ScheduleError(f"scheduled task {self.id!r}: timeout must be > 0 seconds")
        object.__setattr__(self, "parsed", Schedule.parse(self.schedule))

    def call(self, run: ScheduledRun) -> Any:
        """Call ``execute`` with ``run`` if it takes an argument, else with none."""
        try:
            takes_run = bool(inspect.signature(self.execute).parameters)
        except (TypeError, ValueError):  # a builtin without a signature
            takes_run = False
        return self.execute(run) if takes_run else self.execute()
