"""The job store contract: where each job's state lives, so it can be looked up any time.

A store is written by producers (``add``) and by workers (``claim``, ``set_progress``,
``update``, ``apply``), from many processes at once. The contract comes in five parts, one
per concern, so a collaborator can ask for the part it uses: ``ProducerStore`` (records added
jobs), ``WorkerStore`` (an attempt's writes and the transitions of ``adapter.job``),
``InspectionStore`` (Vendure's inspection queries), ``DeadLetterStore`` and
``SchedulingStore`` (delayed and unique jobs, ``adapter.store.scheduling``). ``JobStore`` is
all five; backends (``sql/``, ``redis/``, ``memory``) fill in its abstract methods.

Two rules hold for every backend:

- a settled job is never overwritten (Vendure's ``settledAt IS NULL`` guard): ``claim``,
  ``set_progress``, ``update`` and ``apply`` change nothing for a settled job;
- reads return fresh snapshots, never objects another caller can mutate.

Stores do not decide what an event does to a job: ``adapter.lifecycle`` does, from the rules
of ``adapter.job``, and a store applies the ``Transition`` or the job it is given atomically.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from adapter.dead_letter import DeadLetter
from adapter.errors import WrongQueueError
from adapter.job import BEAT, CANCEL, DEFER, LOSE, Job, JobState, Transition
from adapter.listing import JobList, JobListOptions, parse_list_options
from adapter.patterns import match_budget
from adapter.store.changes import Watch, unnotified_watch
from adapter.store.scheduling import SchedulingStore

if TYPE_CHECKING:
    from adapter.store.schedules import ScheduleStore

#: Fields a worker may change after ``add``; ``update`` writes them all (one list for all stores).
MUTABLE_FIELDS = (
    "state",
    "progress",
    "result",
    "error",
    "retries",
    "attempts",
    "started_at",
    "settled_at",
    "updated_at",
)

#: What ``claim_many`` answers for one job: claimed, not to run (None), or of another queue.
Claimed = Job | WrongQueueError | None

#: Dead letters a store keeps by default (``DeadLetterStore.max_dead_letters``).
MAX_DEAD_LETTERS = 10_000


class ProducerStore(ABC):
    """What ``add`` needs: record new jobs, undo a record, read one back."""

    #: The URL the store was opened with, for messages (passwords masked by the opener).
    url: str = ""

    @abstractmethod
    def insert(self, job: Job) -> None:
        """Store a new job, which already carries its id; DuplicateJobError if it is taken."""

    @abstractmethod
    def insert_many(self, new_jobs: Sequence[Job]) -> None:
        """Store new jobs at once (one transaction or round trip), skipping ids already stored.

        A skipped job is left exactly as stored: a worker may have recorded it from its message
        (``claim``) and run it before this write arrives (``adapter.celery.write_behind``).
        """

    @abstractmethod
    def get(self, job_id: str) -> Job | None:
        """Return the job with ``job_id`` as stored now, or None."""

    @abstractmethod
    def delete(self, job_id: str) -> None:
        """Remove a job, used to undo ``insert`` when publishing it failed."""

    def close(self) -> None:  # noqa: B027 - optional for stores without connections
        """Release connections."""


class WorkerStore(ABC):
    """What workers need: begin an attempt, record progress and outcomes, apply transitions."""

    @abstractmethod
    def claim(self, job: Job, busy_after: datetime | None = None) -> Job | None:
        """Apply ``adapter.job.START`` to ``job``: RUNNING, attempts + 1, started now.

        A job missing from the store (published by another producer, or by one using another
        store) is inserted from ``job`` first. Returns the stored job after the change, or
        None when the job must not run: it is settled (for example cancelled), or, with
        ``busy_after``, it is RUNNING with a heartbeat since then (alive on another worker:
        this delivery is a duplicate). Without ``busy_after`` a RUNNING job is claimed.
        A waiting job whose ``ready_at`` is after now is not started either: it is due-marked
        again (``adapter.store.scheduling``), and a START clears the job's due mark.
        A job stored for another queue than ``job.queue_name`` is left as it is:
        WrongQueueError (``wrong_queue``), so a message cannot take another queue's job.
        """

    def claim_many(self, jobs: Sequence[Job], busy_after: datetime | None = None) -> list[Claimed]:
        """``claim`` each of ``jobs`` (distinct ids), in one transaction or round trip where the
        store can: one entry per job, in order, the claimed job, None, or the job's
        WrongQueueError (the others are claimed still). StoreError when the store failed.

        This default claims each in turn; backends override it.
        """
        found: list[Claimed] = []
        for job in jobs:
            try:
                found.append(self.claim(job, busy_after))
            except WrongQueueError as err:
                found.append(err)
        return found

    @abstractmethod
    def set_progress(self, job_id: str, progress: float) -> bool:
        """Record progress of an unsettled job; False when it is settled or unknown."""

    @abstractmethod
    def update(self, job: Job) -> bool:
        """Write every mutable field of an unsettled job; False when it is settled or unknown."""

    def update_many(self, jobs: Sequence[Job]) -> list[bool]:
        """``update`` each of ``jobs`` (distinct ids), in one transaction or round trip where
        the store can; one answer per job, in order (False: settled or unknown, unchanged).

        This default updates each in turn; backends override it.
        """
        return [self.update(job) for job in jobs]

    def apply(
        self,
        transition: Transition,
        job_ids: Sequence[str] | None,
        *,
        stale_before: datetime | None = None,
        given: Mapping[str, Any] | None = None,
    ) -> list[Job]:
        """Apply ``transition`` to the unsettled jobs among ``job_ids``, each atomically.

        ``job_ids`` None means every stored job in the transition's source states.
        ``stale_before``: jobs in its ``stale_sources`` whose ``updated_at`` is older are
        changed too. ``given`` holds the values of its ``given`` fields. Every change also
        sets ``updated_at`` to now. Returns the jobs changed, as stored after the change.
        """
        values = dict(given or {})
        transition.check_given(values)
        if job_ids is None:
            return self._apply(transition, None, stale_before, values)
        wanted = list(dict.fromkeys(job_ids))
        return self._apply(transition, wanted, stale_before, values) if wanted else []

    @abstractmethod
    def _apply(
        self,
        transition: Transition,
        job_ids: list[str] | None,
        stale_before: datetime | None,
        given: dict[str, Any],
    ) -> list[Job]:
        """``apply`` with its arguments checked: distinct ids (never empty) or None."""

    @abstractmethod
    def cancelled_among(self, job_ids: Sequence[str]) -> set[str]:
        """Return which of ``job_ids`` are CANCELLED now."""


def wrong_queue(job: Job, stored_queue_name: str) -> WrongQueueError:
    """Return the error of a claim of ``job`` whose stored job is of ``stored_queue_name``."""
    return WrongQueueError(
        f"job {job.id} is stored for queue {stored_queue_name!r}, not {job.queue_name!r}: "
        "a message may only run a job of its own queue"
    )


class InspectionStore(ABC):
    """Vendure's inspection: list, look up, count and remove settled jobs."""

    def find_many(self, options: JobListOptions | Mapping[str, Any] | None = None) -> JobList:
        """Return one page of the jobs matching ``options`` (see adapter.listing) and the total.

        Raises:
            InvalidListOptionsError: naming the option this store cannot answer, or the
                ``regex`` pattern that ran out of its matching budget (adapter.patterns).
        """
        parsed = parse_list_options(options)
        with match_budget() as budget:
            page = self._find_many(parsed)
        budget.raise_if_exhausted()
        return page

    @abstractmethod
    def _find_many(self, options: JobListOptions) -> JobList:
        """``find_many`` with parsed options, its regex matches inside one budget."""

    @abstractmethod
    def find_many_by_id(self, ids: Sequence[str]) -> list[Job]:
        """Return the jobs with these ids, in the order given; unknown ids are dropped."""

    def watch(self, job_id: str) -> Watch:
        """Return a watch woken when ``job_id``'s state or progress may have been written.

        Take it before reading the job, so no write falls in between. Stores that push
        changes (Redis, PostgreSQL, memory) wake it; this default never does: the waiter polls.
        """
        return unnotified_watch(job_id)

    @abstractmethod
    def queue_counts(self) -> dict[str, dict[JobState, int]]:
        """Return, for every queue with stored jobs, how many jobs are in each state."""

    @abstractmethod
    def remove_settled(
        self, queue_names: Sequence[str] | None = None, older_than: datetime | None = None
    ) -> int:
        """Delete the jobs of ``queue_names`` (all if none) settled before ``older_than``.

        ``older_than`` defaults to now; a naive time is UTC. Returns how many jobs were deleted.
        """


class DeadLetterStore(ABC):
    """Messages workers refused as not jobs, kept with the reason: the newest only."""

    #: Dead letters kept at most; recording one more drops the oldest.
    max_dead_letters: int = MAX_DEAD_LETTERS

    @abstractmethod
    def record_dead_letter(self, letter: DeadLetter) -> None:
        """Keep ``letter`` (a message that was not run), dropping the oldest past the cap."""

    @abstractmethod
    def dead_letters(self, take: int = 100) -> list[DeadLetter]:
        """Return the latest ``take`` dead letters, newest first."""


class JobStore(ProducerStore, WorkerStore, InspectionStore, DeadLetterStore, SchedulingStore):
    """Persists jobs by id: the whole contract, which every backend implements.

    The transitions of ``adapter.job`` have one method each here, written once over ``apply``.
    """

    @property
    def schedules(self) -> ScheduleStore:
        """Scheduled-task state and retention, kept beside the jobs (``store.schedules``)."""
        raise NotImplementedError(f"{type(self).__name__} keeps no scheduled tasks")

    def cancel(self, job_id: str) -> Job | None:
        """Settle an unsettled job as CANCELLED; return the job as stored now, or None."""
        changed = self.apply(CANCEL, [job_id])
        return changed[0] if changed else self.get(job_id)

    def defer(self, job_ids: Sequence[str]) -> int:
        """Send RUNNING, unsettled jobs back to PENDING with attempts reset; return how many."""
        return len(self.apply(DEFER, job_ids))

    def heartbeat(self, job_ids: Sequence[str]) -> int:
        """Mark RUNNING, unsettled jobs among ``job_ids`` alive now; return how many.

        A beat is the job's ``updated_at``: progress and claims count as beats too.
        """
        return len(self.apply(BEAT, job_ids))

    def reap(self, stale_before: datetime, reason: str) -> list[Job]:
        """Apply ``adapter.job.LOSE`` to RUNNING jobs not heard of since ``stale_before``.

        Each becomes RETRYING with progress 0 and ``error = reason``, atomically per job: a job
        that beat or settled meanwhile is left alone. Returns the jobs changed, as stored now.
        """
        return self.apply(LOSE, None, stale_before=stale_before, given={"error": reason})
