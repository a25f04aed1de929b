"""The documented interface: JobQueueStrategy and its inspectable extension.

Python-native forms of Vendure's ``JobQueueStrategy`` and ``InspectableJobQueueStrategy``:
each method returns what Vendure's Promise resolves to. ``process`` may be a plain function or
an ``async def`` coroutine function taking the Job and returning its result.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

from adapter import rerun
from adapter.bulk import checked_batch
from adapter.job import Job
from adapter.listing import MAX_TAKE, JobList, JobListOptions

ProcessFunction = Callable[[Job], Any] | Callable[[Job], Awaitable[Any]]


class JobQueueStrategy(ABC):
    """Adds jobs and runs a process function over each queue that this process starts."""

    def init(self) -> None:  # noqa: B027 - optional lifecycle hook
        """Prepare resources before the first ``start`` (optional lifecycle hook)."""

    def destroy(self) -> None:  # noqa: B027 - optional lifecycle hook
        """Release resources at shutdown (optional lifecycle hook)."""

    @abstractmethod
    def add(self, job: Job) -> Job:
        """Publish a new job and return it with its assigned id, in state PENDING."""

    def add_many(self, jobs: Iterable[Job]) -> Sequence[Job]:
        """Publish many new jobs and return them with their ids, in order, in state PENDING.

        Every job is checked before any is published (``adapter.bulk``): a bad one raises,
        naming its index (``jobs[3]: ...``), and nothing is added. This default then adds the
        jobs one by one; a strategy that can publish a batch at once overrides it.
        """
        return [self.add(job) for job in checked_batch(jobs)]

    @abstractmethod
    def start(self, queue_name: str, process: ProcessFunction) -> None:
        """Begin running ``process`` over the jobs of ``queue_name`` (idempotent per pair)."""

    @abstractmethod
    def stop(self, queue_name: str, process: ProcessFunction) -> None:
        """Stop taking jobs of ``queue_name`` for ``process``; queued jobs stay queued."""


class InspectableJobQueueStrategy(JobQueueStrategy):
    """A strategy whose jobs can be looked up, listed, cancelled and cleaned up."""

    @abstractmethod
    def find_one(self, job_id: str) -> Job | None:
        """Return the job as it is now, or None when no job has that id."""

    @abstractmethod
    def find_many(self, options: JobListOptions | Mapping[str, Any] | None = None) -> JobList:
        """Return a page of jobs and the total before paging (Vendure's ``JobListOptions``)."""

    @abstractmethod
    def find_many_by_id(self, ids: Sequence[str]) -> list[Job]:
        """Return the jobs with these ids that exist, in the order given."""

    @abstractmethod
    def remove_settled_jobs(
        self, queue_names: Sequence[str] | None = None, older_than: datetime | None = None
    ) -> int:
        """Delete settled jobs of ``queue_names`` (all if none) settled before ``older_than``."""

    @abstractmethod
    def cancel_job(self, job_id: str) -> Job | None:
        """Cancel a job that has not settled; return it as it is now, or None if unknown."""

    def retry_job(self, job_id: str) -> Job:
        """Re-run a FAILED or CANCELLED job as a new job whose ``retried_from`` is ``job_id``.

        Returns the new job. UnknownJobError for an unknown id, JobNotRetryableError for a job
        in another state (``adapter.rerun``); the original is left as it is.
        """
        return self.add(rerun.retry_job(job_id, self.find_one))

    def retry_jobs(
        self,
        options: JobListOptions | Mapping[str, Any] | None = None,
        *,
        limit: int = rerun.MAX_RETRY_JOBS,
    ) -> int:
        """Re-run every FAILED or CANCELLED job matching ``options``' filter; return how many.

        At most ``limit`` jobs, oldest first; a job that already has a re-run is skipped.
        """
        reruns = rerun.reruns_matching(options, self, limit)
        for start in range(0, len(reruns), MAX_TAKE):
            self.add_many(reruns[start : start + MAX_TAKE])
        return len(reruns)

    def retries_of(self, job_id: str) -> list[Job]:
        """Return the jobs that re-run ``job_id`` (their ``retried_from``), oldest first."""
        return rerun.retries_of(job_id, self)
