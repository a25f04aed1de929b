"""The scheduled-task store contract: each task's state, its run history, and retention.

Kept by the job store's own backend (``JobStore.schedules()``), beside the jobs, in tables
or keys of its own: SQL ``adapter_scheduled_task`` and ``adapter_scheduled_run``
(``sql/schedules.py``), Redis ``{p}:sched:*`` (``redis/schedules.py``), or memory
(``memory_schedules.py``). ``adapter_job`` is not changed.

``claim`` is the one compare-and-set that makes a tick run once: it takes tick ``t`` of a task
only while the task's ``last_tick`` is before ``t`` (so a tick is taken once, whoever computes
it and with whatever clock) and, when exclusive, while no live lease is held (so runs do not
overlap). A lease is an owner and an expiry that the run renews; a run that dies stops
renewing, and its lease expires. ``now()`` is the store server's clock where it has one.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from adapter.retention import RetentionRule


@dataclass(frozen=True)
class TaskRecord:
    """What the store keeps for one scheduled task."""

    task_id: str
    enabled: bool = True
    #: The nominal time of the last tick claimed: no tick at or before it runs again.
    last_tick: datetime | None = None
    #: Set by ``request_run``: the next worker to look runs the task once, off schedule.
    run_requested_at: datetime | None = None
    lease_owner: str | None = None
    lease_until: datetime | None = None
    last_started_at: datetime | None = None
    last_finished_at: datetime | None = None
    #: JSON text of the last run's result.
    last_result: str | None = None
    last_error: str | None = None

    def running(self, now: datetime) -> bool:
        """True while a run holds a lease that has not expired."""
        return self.lease_owner is not None and (
            self.lease_until is not None and self.lease_until >= now
        )


@dataclass(frozen=True)
class Claim:
    """A worker's bid for one run of a task (``ScheduleStore.claim``)."""

    task_id: str
    #: The tick's nominal time; None for a run asked for with ``request_run``.
    tick: datetime | None
    owner: str
    #: The time the claim is judged at (lease expiry), and the lease it asks for.
    now: datetime
    lease_until: datetime
    #: True for ``prevent_overlap``: only while no lease is live.
    exclusive: bool


@dataclass(frozen=True)
class RunRecord:
    """One finished run of a task, kept in its bounded history."""

    task_id: str
    #: The tick's nominal time; None for a run asked for with ``request_run``.
    tick: datetime | None
    owner: str
    started_at: datetime
    finished_at: datetime
    #: JSON text of the result; None when the run failed.
    result: str | None = None
    error: str | None = None


class ScheduleStore(ABC):
    """Scheduled-task state and run history in the job store's backend, plus retention."""

    @abstractmethod
    def now(self) -> datetime:
        """Return the store's time (its server's clock where it has one), timezone-aware."""

    @abstractmethod
    def register(self, task_id: str, last_tick: datetime) -> None:
        """Record a task not seen before, enabled, as if ``last_tick`` had run."""

    @abstractmethod
    def claim(self, claim: Claim) -> bool:
        """Take a run of the task atomically; True when taken (then ``claim.owner`` holds it).

        With a ``tick``: only if the task is enabled and its ``last_tick`` is before ``tick``
        (then ``last_tick`` becomes ``tick``). Without: only if a run was requested (the
        request is then cleared). ``exclusive``: only if no lease is live at ``now``.
        """

    @abstractmethod
    def renew(self, task_id: str, owner: str, lease_until: datetime) -> bool:
        """Extend ``owner``'s lease; False when ``owner`` no longer holds it."""

    @abstractmethod
    def finish(self, run: RunRecord, keep: int) -> None:
        """Record a finished run (last result, history of at most ``keep``); free its lease."""

    @abstractmethod
    def set_enabled(self, task_id: str, enabled: bool) -> bool:
        """Enable or disable a task's ticks; False for a task never registered."""

    @abstractmethod
    def request_run(self, task_id: str, now: datetime) -> bool:
        """Ask for one run off schedule; False for a task never registered."""

    @abstractmethod
    def records(self) -> dict[str, TaskRecord]:
        """Return every registered task's record, by id."""

    @abstractmethod
    def history(self, task_id: str, take: int = 100) -> list[RunRecord]:
        """Return the task's latest finished runs, newest first."""

    @abstractmethod
    def apply_retention(self, rule: RetentionRule, now: datetime) -> int:
        """Delete the settled jobs ``rule`` does not keep; return how many."""
