"""Re-running settled jobs: a FAILED or CANCELLED job runs again as a new job, linked to it.

The original is never changed (a settled job is never rewritten: ``adapter.store.base``). The
new job carries ``retried_from``, the original's id (``retriedFrom`` on the wire); the other
direction, the re-runs of a job, is the query ``retriedFrom eq <id>`` (``retries_of``), so no
settled record has to be written to link them. A re-run keeps the queue, data, retries,
priority and timeout of the original and starts fresh: PENDING, no attempts, no result or error.

``retry_jobs`` re-runs every FAILED or CANCELLED job matching a ``find_many`` filter, at most
``MAX_RETRY_JOBS`` per call, oldest first, and skips a job that already has a re-run: pressing
"retry all failed" twice does not run each job twice.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any, Protocol

from adapter.errors import InvalidListOptionsError, JobNotRetryableError, UnknownJobError
from adapter.job import Job, JobState
from adapter.listing import (
    MAX_TAKE,
    JobFilter,
    JobList,
    JobListOptions,
    LogicalOperator,
    SortField,
    SortOrder,
    StringOperators,
    parse_list_options,
)

#: States a job can be re-run from: it ended without a result.
RERUNNABLE_STATES = frozenset({JobState.FAILED, JobState.CANCELLED})
#: Most jobs one ``retry_jobs`` call re-runs; call again for more.
MAX_RETRY_JOBS = 10_000


class JobFinder(Protocol):
    """What re-running needs to look jobs up (a strategy or a store)."""

    def find_many(self, options: JobListOptions | Mapping[str, Any] | None = None) -> JobList: ...


def rerun_of(job: Job) -> Job:
    """Return the new job that re-runs ``job``, or raise JobNotRetryableError naming its state."""
    if job.state not in RERUNNABLE_STATES:
        raise JobNotRetryableError(
            f"job {job.id} is {job.state.value}; only a FAILED or CANCELLED job can be retried"
        )
    return Job(
        queue_name=job.queue_name,
        data=job.data,
        retries=job.retries,
        priority=job.priority,
        timeout=job.timeout,
        retried_from=job.id,
    )


def retry_job(job_id: str, get: Callable[[str], Job | None]) -> Job:
    """Return the re-run of the stored job ``job_id`` (not added yet)."""
    job = get(job_id)
    if job is None:
        raise UnknownJobError(f"no job with id {job_id}")
    return rerun_of(job)


def retries_of(job_id: str, finder: JobFinder) -> list[Job]:
    """Return the jobs that re-run ``job_id``, oldest first (at most ``MAX_TAKE``)."""
    options = {
        "filter": {"retriedFrom": {"eq": job_id}},
        "sort": {"createdAt": "ASC"},
        "take": MAX_TAKE,
    }
    return finder.find_many(options).items


def reruns_matching(
    options: JobListOptions | Mapping[str, Any] | None,
    finder: JobFinder,
    limit: int = MAX_RETRY_JOBS,
) -> list[Job]:
    """Return the re-runs of the FAILED or CANCELLED jobs matching ``options`` (its filter).

    ``skip``, ``take`` and ``sort`` of ``options`` are ignored: every match is taken, oldest
    first, up to ``limit``. Jobs that already have a re-run are skipped.
    """
    if not 0 <= limit <= MAX_RETRY_JOBS:
        raise InvalidListOptionsError(f"limit is {limit}; it must be from 0 to {MAX_RETRY_JOBS}")
    wanted = _rerunnable_filter(parse_list_options(options))
    found: list[Job] = []
    for page in _pages(wanted, finder):
        already = _rerun_already(page, finder)
        found.extend(rerun_of(job) for job in page if job.id not in already)
        if len(found) >= limit:
            return found[:limit]
    return found


def _rerunnable_filter(options: JobListOptions) -> JobFilter:
    """The filter of ``options`` (under its operator), and a FAILED or CANCELLED state."""
    states = StringOperators(in_=sorted(state.value for state in RERUNNABLE_STATES))
    if options.filter is None:
        return JobFilter(state=states)
    given = options.filter
    if options.filter_operator == LogicalOperator.OR:
        given = JobFilter(or_=[given])  # its conditions stay ORed inside the AND
    return JobFilter(state=states, and_=[given])


def _pages(wanted: JobFilter, finder: JobFinder) -> Iterator[list[Job]]:
    """The matching jobs, a page at a time, oldest first (re-runs are PENDING: never matched)."""
    skip = 0
    while True:
        options = JobListOptions(
            skip=skip,
            take=MAX_TAKE,
            filter=wanted,
            sort={SortField.CREATED_AT: SortOrder.ASC, SortField.ID: SortOrder.ASC},
        )
        page = finder.find_many(options).items
        if not page:
            return
        yield page
        skip += len(page)


def _rerun_already(jobs: Sequence[Job], finder: JobFinder) -> set[str]:
    """Return the ids among ``jobs`` that some job already re-runs."""
    ids = [job.id for job in jobs if job.id is not None]
    options = {"filter": {"retriedFrom": {"in": ids}}, "take": MAX_TAKE}
    return {job.retried_from for job in _all(options, finder) if job.retried_from}


def _all(options: dict[str, Any], finder: JobFinder) -> Iterable[Job]:
    skip = 0
    while True:
        page = finder.find_many({**options, "skip": skip}).items
        yield from page
        if len(page) < MAX_TAKE:
            return
        skip += len(page)
