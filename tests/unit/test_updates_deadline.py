"""``updates(deadline=...)`` bounds the whole wait, so following a job nobody runs ends."""

from __future__ import annotations

from adapter.job import Job, JobState
from adapter.subscribable import TIMED_OUT_RESULT, SubscribableJob
from tests.factories import make_job


class StillPending:
    """A finder whose job never moves: nobody runs its queue."""

    def __init__(self, job: Job) -> None:
        self.job = job
        self.looks = 0

    def find_one(self, job_id: str) -> Job | None:
        self.looks += 1
        return self.job.model_copy()


def test_a_deadline_ends_the_updates_of_a_job_nobody_runs_with_the_state_seen() -> None:
    job = make_job(id="waits", data={"n": 1})
    finder = StillPending(job)
    updates = SubscribableJob.wrap(job, finder).updates(poll_interval=0.05, deadline=0.3)

    seen = list(updates)

    assert [(u.state, u.result) for u in seen] == [
        (JobState.PENDING, None),
        (JobState.PENDING, TIMED_OUT_RESULT),
    ]
    assert updates.timed_out
    assert finder.looks >= 2  # it kept looking until the deadline


def test_without_a_deadline_the_first_update_stops_the_timeout() -> None:
    job = make_job(id="settles")
    finder = StillPending(job.model_copy(update={"state": JobState.COMPLETED}))
    updates = SubscribableJob.wrap(job, finder).updates(poll_interval=0.05, timeout=5)

    assert [u.state for u in updates] == [JobState.COMPLETED]
    assert not updates.timed_out
