"""Bulk add: ``strategy.add_many`` and ``JobQueue.add_many`` on every broker and store."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from adapter import (
    CeleryJobQueueStrategy,
    DuplicateJobError,
    InvalidJobError,
    InvalidQueueNameError,
    Job,
    JobDataError,
    JobQueueError,
    JobQueueService,
    JobState,
    SubscribableJob,
)
from tests.support import delete_queues, messages_waiting, unique_queue, wait_for

#: Jobs of the bulk run: the issue's "add_many of 1,000 jobs".
MANY = 1000


def count_settled(strategy: CeleryJobQueueStrategy, queue_name: str) -> int:
    """Return how many jobs of ``queue_name`` the store holds COMPLETED."""
    return strategy.queue_counts().get(queue_name, {}).get(JobState.COMPLETED, 0)


def stored_total(strategy: CeleryJobQueueStrategy, queue_name: str) -> int:
    """Return how many jobs of ``queue_name`` the store holds, once this process's are written."""
    strategy.flush()
    return strategy.find_many({"filter": {"queueName": {"eq": queue_name}}}).total_items


@pytest.fixture
def other_queue(strategy: CeleryJobQueueStrategy) -> Iterator[str]:
    """A second fresh queue name; its celery queue is deleted after the test."""
    name = unique_queue("add-many-other")
    yield name
    delete_queues(strategy, name)


@pytest.mark.timeout(240)  # 1,000 jobs through each pair, the embedded broker included
def test_many_jobs_added_at_once_are_stored_and_each_runs_once(
    strategy: CeleryJobQueueStrategy, queue: str, other_queue: str, run: Any
) -> None:
    runs: Counter[str] = Counter()
    lock = threading.Lock()

    def process(job: Job) -> int:
        with lock:
            runs[job.id or ""] += 1
        return int(job.data["n"])

    names = [queue if n % 3 else other_queue for n in range(MANY)]
    jobs = strategy.add_many(Job(queue_name=name, data={"n": n}) for n, name in enumerate(names))
    assert [(job.queue_name, job.data) for job in jobs] == [
        (name, {"n": n}) for n, name in enumerate(names)
    ]
    assert len({job.id for job in jobs}) == MANY
    assert all(job.state == JobState.PENDING for job in jobs)
    assert stored_total(strategy, queue) + stored_total(strategy, other_queue) == MANY
    run(queue, process)
    run(other_queue, process)
    wait_for(lambda: sum(runs.values()) >= MANY, f"{MANY} jobs run", timeout=300, every=0.5)
    wait_for(
        lambda: count_settled(strategy, queue) + count_settled(strategy, other_queue) == MANY,
        f"{MANY} jobs completed",
        every=0.5,
    )
    assert runs == Counter({job.id or "": 1 for job in jobs})
    assert isinstance(jobs[7], SubscribableJob)
    assert (strategy.find_one(jobs[7].id or "") or jobs[7]).result == 7


def _bad_data(job: Job) -> None:
    job.data = {"when": object()}


def _bad_queue_name(job: Job) -> None:
    job.queue_name = "no:colons"


def _bad_retries(job: Job) -> None:
    job.retries = -1


def _oversized(job: Job) -> None:
    job.data = "x" * 2_000_000


#: Each way a job can be bad, and the error ``add`` raises for it.
BAD_JOBS: dict[str, tuple[Callable[[Job], None], type[JobQueueError]]] = {
    "data": (_bad_data, JobDataError),
    "queue-name": (_bad_queue_name, InvalidQueueNameError),
    "retries": (_bad_retries, InvalidJobError),
    "size": (_oversized, JobDataError),
}


@pytest.mark.parametrize("bad", list(BAD_JOBS))
def test_a_bad_job_fails_add_many_naming_its_index_and_nothing_is_added(
    strategy: CeleryJobQueueStrategy, queue: str, bad: str
) -> None:
    spoil, error = BAD_JOBS[bad]
    jobs = [Job(queue_name=queue, data={"n": n}) for n in range(5)]
    spoil(jobs[3])
    with pytest.raises(error, match=r"^jobs\[3\]: "):
        strategy.add_many(jobs)
    assert messages_waiting(strategy, queue) == 0
    assert stored_total(strategy, queue) == 0


def test_add_many_refuses_an_id_already_stored_and_adds_nothing(
    strategy: CeleryJobQueueStrategy, queue: str
) -> None:
    first = strategy.add(Job(queue_name=queue, data="first"))
    jobs = [Job(queue_name=queue, data=n) for n in range(3)] + [first.model_copy()]
    with pytest.raises(DuplicateJobError, match=r"^jobs\[3\]: "):
        strategy.add_many(jobs)
    assert stored_total(strategy, queue) == 1
    assert messages_waiting(strategy, queue) == 1


def test_add_many_keeps_the_ids_it_is_given(strategy: CeleryJobQueueStrategy, queue: str) -> None:
    ids = [f"given-{unique_queue('id')}" for _ in range(3)]
    jobs = strategy.add_many(Job(id=job_id, queue_name=queue, data=None) for job_id in ids)
    assert [job.id for job in jobs] == ids
    assert [job.id for job in strategy.find_many_by_id(ids)] == ids


def test_service_add_many_adds_to_the_prefixed_queue_and_every_job_runs(
    strategy: CeleryJobQueueStrategy,
) -> None:
    service = JobQueueService(strategy, prefix="bulk-")
    name = unique_queue("service-add-many")
    seen: list[Any] = []
    queue = service.create_queue(name, lambda job: seen.append(job.data))
    try:
        jobs = queue.add_many([{"n": n} for n in range(20)], retries=2)
        assert {job.queue_name for job in jobs} == {f"bulk-{name}"}
        assert {job.retries for job in jobs} == {2}
        service.start()
        wait_for(lambda: count_settled(strategy, f"bulk-{name}") == 20, "20 jobs completed")
        assert sorted(item["n"] for item in seen) == list(range(20))
        assert all(isinstance(job, SubscribableJob) for job in jobs)
    finally:
        service.stop()
        delete_queues(strategy, f"bulk-{name}")
