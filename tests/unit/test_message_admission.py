"""What a message may do to a job: its own queue only, recorded as ``add`` records it.

The memory store stands in for every store here (the store contract checks the claim's queue
guard on each); the consumer side is checked with real workers in
tests/integration/test_routing.py.
"""

from __future__ import annotations

import pytest

from adapter.backoff import constant_backoff
from adapter.celery.admission import refusal
from adapter.celery.selection import QueueSelection
from adapter.errors import WrongQueueError
from adapter.job import Job, JobState
from adapter.lifecycle import Lifecycle, Liveness
from adapter.running import RunningJobs
from adapter.store.memory import MemoryJobStore
from tests.factories import make_job


def lifecycle_on(store: MemoryJobStore) -> Lifecycle:
    """Return a lifecycle over ``store`` with default settings."""
    return Lifecycle(store, Liveness(), constant_backoff(), RunningJobs(store))


def test_job_recorded_from_its_message_starts_pending_whatever_the_message_says() -> None:
    store = MemoryJobStore()
    forged = make_job(state=JobState.COMPLETED, result="never ran", attempts=7, progress=100)
    claimed = lifecycle_on(store).claim(forged)
    assert claimed is not None
    assert (claimed.state, claimed.attempts, claimed.result, claimed.progress) == (
        JobState.RUNNING,
        1,
        None,
        0,
    )
    assert claimed.data == forged.data


def test_message_naming_another_queues_job_changes_nothing() -> None:
    store = MemoryJobStore()
    victim = make_job(queue_name="b", data={"owner": "b"})
    store.insert(victim)
    forged = victim.model_copy(update={"queue_name": "a", "data": {"owner": "forger"}})
    with pytest.raises(WrongQueueError):
        lifecycle_on(store).claim(forged)
    assert store.get(str(victim.id)) == victim


@pytest.mark.parametrize(
    ("routing_key", "refused"),
    [("jobs.a", False), ("jobs.b", True), ("celery", False), (None, False)],
)
def test_a_job_runs_only_from_the_job_queue_of_its_queue_name(
    routing_key: str | None, refused: bool
) -> None:
    job = Job(id="j1", queue_name="a")
    reason = refusal(job, {"routing_key": routing_key})
    assert (reason is not None) == refused
    if reason is not None:
        assert (
            reason
            == "job j1 of queue 'a' came through 'jobs.b': a job runs only from its own queue"
        )


@pytest.mark.parametrize(
    ("include", "exclude", "selected"),
    [
        (None, None, {"a", "b", "c"}),  # no flag: every started queue
        (["jobs.a", "b"], None, {"a", "b"}),  # -Q by celery queue name or queue name
        ("celery", None, set()),  # -Q celery: no job queue
        (None, "jobs.a,b", {"c"}),  # -X, comma-separated as Celery passes text
        (["jobs.a", "b"], ["b"], {"a"}),
    ],
)
def test_worker_flags_select_queues_by_either_name(
    include: list[str] | str | None, exclude: list[str] | str | None, selected: set[str]
) -> None:
    selection = QueueSelection.from_worker_options(include, exclude)
    assert {name for name in ("a", "b", "c") if selection.selects(name)} == selected


def test_queue_controls_select_and_deselect_from_then_on() -> None:
    selection = QueueSelection.from_worker_options(["jobs.a"], ["b"])
    selection.include("b")  # add_consumer jobs.b undoes -X b
    selection.exclude("a")  # cancel_consumer jobs.a
    assert [name for name in ("a", "b", "c") if selection.selects(name)] == ["b"]
    selection.include("a")
    assert selection.selects("a")
