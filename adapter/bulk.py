"""Checking a batch of jobs before ``add_many`` publishes any of them.

``add_many`` is all or nothing up to the broker: every job is checked first (its fields, its
queue name, its data as JSON and, when a limit is given, the size of that JSON), and the first
bad one fails the whole call with the error ``add`` would raise, its message starting with the
job's index (``jobs[3]: ...``). Nothing is published and nothing is stored then.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final

from adapter.data import check_data_size, ensure_json
from adapter.errors import DuplicateJobError, InvalidJobError, JobQueueError
from adapter.job import FieldChecks, Job


def checked_batch(jobs: Iterable[Job], max_data_bytes: int | None = None) -> list[Job]:
    """Return ``jobs`` as a list once each passes what ``add`` checks; else raise for the first.

    The error is of the class ``add`` raises (InvalidJobError, InvalidQueueNameError,
    JobDataError; also when the iterable fails to build a job), or DuplicateJobError for an id
    given twice, and names the job's index.
    """
    batch: list[Job] = []
    given_ids: dict[str, int] = {}
    fields = FieldChecks()
    iterator = iter(jobs)
    while True:
        index = len(batch)
        try:
            job = next(iterator, _END)  # building a job may fail too: that is its error
            if job is _END:
                return batch
            _check(job, fields, max_data_bytes)
        except JobQueueError as err:
            raise type(err)(f"jobs[{index}]: {err}") from err
        if job.id is not None:
            first = given_ids.setdefault(job.id, index)
            if first != index:
                raise DuplicateJobError(f"jobs[{index}]: id {job.id!r} is also jobs[{first}]'s")
        batch.append(job)


#: Marks the end of the jobs given to ``checked_batch``.
_END: Final = Job.model_construct(queue_name="")


def _check(job: Job, fields: FieldChecks, max_data_bytes: int | None) -> None:
    if not isinstance(job, Job):
        raise InvalidJobError(f"expected a Job, got {type(job).__name__}")
    fields.check(job)
    if max_data_bytes is None:
        ensure_json(job.data)
    else:
        check_data_size(job.data, max_data_bytes)
