"""When and how often a job runs: the options of ``add`` turned into the job's fields.

``add(job, delay=..., run_at=..., priority=..., unique_key=..., debounce=...)`` (strategy and
``JobQueue``) calls ``with_timing`` once; everything after it reads only the job's fields:

- ``delay`` (seconds from now) or ``run_at`` (a time; naive means UTC) sets ``ready_at``: the
  job is stored PENDING and published by a worker's promoter at that time, never before
  (``adapter.store.scheduling``, ``adapter.celery.promoter``).
- ``priority`` 0-9 (higher first) sets ``priority``; ``unique_key`` sets ``unique_key``.
- ``debounce`` (seconds, with a unique key) sets ``ready_at`` to now + debounce, and tells
  ``add`` to replace the waiting job's data and time (``Timing.replace``).

Bad combinations raise InvalidJobError naming the option; ranges are checked with the job's
other fields (``adapter.job.check_fields``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from adapter.errors import InvalidJobError
from adapter.job import Job, utcnow

#: Longest delay or debounce accepted, in seconds (about 100 years: past it, a typo).
MAX_DELAY_S = 100 * 365 * 24 * 3600


@dataclass(frozen=True)
class Timing:
    """The timing options of one ``add``."""

    delay: float | None = None
    run_at: datetime | None = None
    priority: int | None = None
    unique_key: str | None = None
    debounce: float | None = None

    @property
    def replace(self) -> bool:
        """True when a waiting job with the key takes this add's data and time (debounce)."""
        return self.debounce is not None

    def apply(self, job: Job, now: datetime | None = None) -> Job:
        """Return ``job`` with these options as its fields (``job`` itself when there are none)."""
        if self == NO_TIMING:
            return job
        now = now or utcnow()
        changes: dict[str, object] = {}
        if self.delay is not None and self.run_at is not None:
            raise InvalidJobError("give delay or run_at, not both")
        if self.delay is not None:
            changes["ready_at"] = now + timedelta(seconds=_seconds("delay", self.delay))
        if self.run_at is not None:
            if not isinstance(self.run_at, datetime):
                raise InvalidJobError(f"run_at must be a datetime, got {self.run_at!r}")
            run_at = self.run_at
            changes["ready_at"] = run_at if run_at.tzinfo else run_at.replace(tzinfo=UTC)
        if self.priority is not None:
            changes["priority"] = self.priority
        if self.unique_key is not None:
            changes["unique_key"] = self.unique_key
        if self.debounce is not None:
            if "ready_at" in changes:
                raise InvalidJobError("debounce sets the start time: give no delay or run_at")
            if (self.unique_key or job.unique_key) is None:
                raise InvalidJobError("debounce needs a unique_key: the jobs it merges share it")
            seconds = _seconds("debounce", self.debounce)
            if seconds == 0:
                raise InvalidJobError("debounce must be more than 0 seconds")
            changes["ready_at"] = now + timedelta(seconds=seconds)
        return job.model_copy(update=changes)


#: No timing option given.
NO_TIMING = Timing()


def _seconds(name: str, value: object) -> float:
    """Return ``value`` as seconds, or raise naming option ``name``."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidJobError(f"{name} must be a number of seconds, got {value!r}")
    if not math.isfinite(value) or not 0 <= value <= MAX_DELAY_S:
        raise InvalidJobError(f"{name} is {value!r}; it must be from 0 to {MAX_DELAY_S} seconds")
    return float(value)
