"""Factories for test data: build what a test needs, override only what it is about."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from adapter.buffer import JobBuffer
from adapter.job import Job


def make_job(**overrides: Any) -> Job:
    """Return a pending job with a fresh id on a test queue; keyword arguments override fields."""
    fields: dict[str, Any] = {
        "id": uuid.uuid4().hex,
        "queue_name": "test-queue",
        "data": {"greeting": "hello"},
    }
    fields.update(overrides)
    return Job(**fields)


#: The day of Vendure's findMany spec fixture (in-memory-job-queue-strategy.spec.ts).
SPEC_DAY = datetime(2020, 4, 3, tzinfo=UTC)


def at(hour: int, minute: int, second: float = 0) -> datetime:
    """Return a time on SPEC_DAY, UTC; ``second`` may carry a fraction."""
    return SPEC_DAY + timedelta(hours=hour, minutes=minute, seconds=second)


def make_spec_jobs() -> list[Job]:
    """Return Vendure's findMany fixture: video-1 at 10:00 ... email-2 at 10:04, in that order."""
    names = ["video-1", "video-2", "email-1", "video-3", "email-2"]
    return [
        make_job(id=name, queue_name=name.split("-")[0], created_at=at(10, minute))
        for minute, name in enumerate(names)
    ]


def make_varied_jobs() -> list[Job]:
    """Return seven jobs that differ in every filterable field, created a minute apart from 10:00.

    Durations: v-running since 10:01:30 (still running), e-done 2000 ms, e-failed 500 ms,
    r-done 3000 ms, the others 0 (never started, or waiting to start again).
    """
    # fmt: off
    rows = [
        # id            queue name      state        attempts retries progress started       settled
        ("v-pending",   "video",        "PENDING",   0, 0, 0,    None,          None),
        ("v-running",   "video",        "RUNNING",   1, 2, 40,   at(10, 1, 30), None),
        ("e-done",      "email",        "COMPLETED", 1, 0, 100,  at(10, 2),     at(10, 2, 2)),
        ("e-failed",    "email",        "FAILED",    3, 2, 0,    at(10, 3),     at(10, 3, 0.5)),
        ("i-cancelled", "Image-Resize", "CANCELLED", 0, 1, 12.5, None,          at(10, 4, 10)),
        ("r-retrying",  "report_daily", "RETRYING",  1, 3, 0,    at(10, 5),     None),
        ("r-done",      "report.daily", "COMPLETED", 2, 1, 100,  at(10, 6, 1),  at(10, 6, 4)),
    ]
    # fmt: on
    fields = (
        "id",
        "queue_name",
        "state",
        "attempts",
        "retries",
        "progress",
        "started_at",
        "settled_at",
    )
    return [
        make_job(created_at=at(10, minute), **dict(zip(fields, row, strict=True)))
        for minute, row in enumerate(rows)
    ]


class JoiningBuffer(JobBuffer):
    """Collects the jobs of one queue and reduces them to one job, their data joined by spaces."""

    def __init__(self, buffer_id: str, queue_name: str) -> None:
        self.id = buffer_id
        self.queue_name = queue_name

    def collect(self, job: Job) -> bool:
        return job.queue_name == self.queue_name

    def reduce(self, jobs: list[Job]) -> list[Job]:
        return [Job(queue_name=jobs[0].queue_name, data=" ".join(str(j.data) for j in jobs))]
