"""Batch queues without a worker: the pool's runner gives each job its own outcome and says
what becomes of each message; the consumer's batcher holds, sends and settles messages.

Real workers run batch queues in tests/integration/test_batches.py (retries, SIGKILL).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from unittest.mock import ANY, patch

import pytest
from celery import Celery

from adapter import CeleryJobQueueStrategy, Job, JobState
from adapter.backoff import constant_backoff
from adapter.celery.batching import ACK, DEAD, REQUEUE, Batcher, BatchRunner, check_batch
from adapter.celery.envelope import request_body
from adapter.celery.publish import JobPublisher
from adapter.celery.registry import ProcessRegistry
from adapter.celery.task import STORE_RETRY_DELAY_S
from adapter.errors import ConfigurationError, StoreError
from adapter.lifecycle import Lifecycle, Liveness
from adapter.running import RunningJobs
from adapter.store.memory import MemoryJobStore
from tests.factories import make_job


@dataclass
class Runs:
    """A process that records the ids of the jobs it ran and fails those asking to."""

    ids: list[str] = field(default_factory=list)

    def __call__(self, job: Job) -> str:
        self.ids.append(job.id or "")
        if job.data and job.data.get("fail"):
            raise ValueError("planned failure")
        return f"ran {job.id}"


@pytest.fixture
def store() -> MemoryJobStore:
    return MemoryJobStore()


@pytest.fixture
def runs() -> Runs:
    return Runs()


class UnreachableStore(MemoryJobStore):
    """A store whose claims fail as an unreachable server's do."""

    def claim(self, job: Job, busy_after: datetime | None = None) -> Job | None:
        raise StoreError("the store is unreachable")


@pytest.fixture
def runner(store: MemoryJobStore, runs: Runs) -> Iterator[BatchRunner]:
    """A runner for queue "q" on an in-memory broker (retries are published there)."""
    app = Celery("batching", broker="memory://", set_as_current=False)
    strategy = CeleryJobQueueStrategy(app, store=store)  # registers the job task on the app
    registry = ProcessRegistry()
    registry.add("q", runs, require_import_path=False)
    lifecycle = Lifecycle(store, Liveness(), constant_backoff(), RunningJobs(store))
    made = BatchRunner(app, registry, lifecycle)
    yield made
    made.close()
    strategy.destroy()
    app.close()


def item(job: Job, routing_key: str = "jobs.q") -> tuple[str, str, str]:
    return (job.id or "", request_body(job.to_wire()), routing_key)


@pytest.mark.parametrize("batch", [0, -1, 1001, True, 2.5, "10", None])
def test_a_batch_size_out_of_range_is_refused_naming_queue_and_value(batch: object) -> None:
    with pytest.raises(ConfigurationError, match=r"queue 'q': batch must be .* got "):
        check_batch("q", batch)


def test_start_with_a_bad_batch_size_starts_nothing() -> None:
    app = Celery("batching-start", broker="memory://", set_as_current=False)
    strategy = CeleryJobQueueStrategy(app, store=MemoryJobStore())
    try:
        with pytest.raises(ConfigurationError, match="batch must be"):
            strategy.start("q", Runs(), batch=0)
        assert strategy.running_queues() == []
    finally:
        strategy.destroy()
        app.close()


def test_each_job_of_a_batch_is_claimed_run_and_recorded_on_its_own(
    runner: BatchRunner, store: MemoryJobStore, runs: Runs
) -> None:
    jobs = [make_job(queue_name="q", data={"n": n}) for n in range(3)]
    store.insert_many(jobs)
    assert runner.run("q", "", [item(job) for job in jobs]) == [(ACK, "")] * 3
    assert runs.ids == [job.id for job in jobs]
    for job in jobs:
        stored = store.get(job.id or "")
        assert stored is not None
        assert (stored.state, stored.result, stored.attempts) == (
            JobState.COMPLETED,
            f"ran {job.id}",
            1,
        )


def test_a_failed_job_with_retries_left_is_retrying_and_its_message_acknowledged(
    runner: BatchRunner, store: MemoryJobStore
) -> None:
    job = make_job(queue_name="q", data={"fail": True}, retries=2)
    store.insert(job)
    assert runner.run("q", "", [item(job)]) == [(ACK, "")]  # its retry is a new message
    stored = store.get(job.id or "")
    assert stored is not None and (stored.state, stored.attempts) == (JobState.RETRYING, 1)


@pytest.mark.parametrize("store", [UnreachableStore()])
def test_a_job_the_store_cannot_claim_is_offered_again_later_not_requeued_at_once(
    runner: BatchRunner, store: MemoryJobStore, runs: Runs
) -> None:
    job = make_job(queue_name="q")
    with patch.object(JobPublisher, "publish") as publish:
        assert runner.run("q", "", [item(job)]) == [(ACK, "")]
    publish.assert_called_once_with(ANY, countdown=STORE_RETRY_DELAY_S)
    assert publish.call_args.args[0].id == job.id and runs.ids == []


def test_a_settled_job_is_acknowledged_without_running(
    runner: BatchRunner, store: MemoryJobStore, runs: Runs
) -> None:
    done = make_job(queue_name="q", state=JobState.COMPLETED, result="before")
    store.insert(done)
    assert runner.run("q", "", [item(done)]) == [(ACK, "")]
    assert runs.ids == []


def test_invalid_jobs_are_dead_letters_and_the_rest_of_the_batch_runs(
    runner: BatchRunner, runs: Runs
) -> None:
    good = make_job(queue_name="q")
    other = make_job(queue_name="other")
    broken = ("t1", "not json", "jobs.q")
    found = runner.run("q", "", [broken, item(other), item(good)])
    assert [what for what, _ in found] == [DEAD, DEAD, ACK]
    assert "a job runs only from its own queue" in found[1][1]
    assert runs.ids == [good.id]


def test_a_batch_of_a_queue_not_run_here_is_handed_back(runner: BatchRunner, runs: Runs) -> None:
    job = make_job(queue_name="elsewhere")
    assert runner.run("elsewhere", "", [item(job, "jobs.elsewhere")]) == [(REQUEUE, "")]
    assert runs.ids == []


# -- the consumer side ---------------------------------------------------------------------


@dataclass
class Message:
    """What the batcher reads of a kombu message, and what was done to it."""

    headers: dict[str, Any]
    body: bytes = b"[[{}], {}, {}]"
    delivery_info: dict[str, Any] = field(default_factory=lambda: {"routing_key": "jobs.q"})
    channel: Any = None
    acknowledged: bool = False
    done: str = ""

    def ack_log_error(self, logger: Any, errors: Any) -> None:
        self.done = "acked"

    def reject_log_error(self, logger: Any, errors: Any, requeue: bool = False) -> None:
        self.done = "requeued" if requeue else "rejected"


@dataclass
class Consumer:
    """A consumer whose pool records the calls it is given, and whose prefetch is counted."""

    calls: list[tuple[Any, ...]] = field(default_factory=list)
    slots: int = 0
    timers: int = 0
    connection_errors: tuple[type[Exception], ...] = ()

    @property
    def pool(self) -> Consumer:
        return self

    @property
    def qos(self) -> Consumer:
        return self

    @property
    def timer(self) -> Consumer:
        return self

    num_processes = 2

    def apply_async(self, target: Any, args: Any, callback: Any, error_callback: Any) -> None:
        self.calls.append((args, callback, error_callback))

    def increment_eventually(self) -> None:
        self.slots += 1

    def decrement_eventually(self) -> None:
        self.slots -= 1

    def call_after(self, secs: float, fun: Any, args: Any, priority: int = 0) -> Any:
        self.timers += 1
        return self

    def cancel(self) -> None:
        pass


def test_a_full_batch_goes_to_the_pool_and_each_message_is_settled_as_the_pool_says(
    runner: BatchRunner,
) -> None:
    dead: list[tuple[Message, str]] = []
    batcher = Batcher(runner, lambda message, reason, _consumer: dead.append((message, reason)))
    batcher.set_size("q", 3)
    consumer = Consumer()
    messages = [Message({"id": f"t{n}"}) for n in range(3)]
    for message in messages[:2]:
        batcher.hold(message, "q", "0|", consumer)
    assert consumer.calls == [] and consumer.timers == 1  # waiting for the batch to fill
    batcher.hold(messages[2], "q", "0|", consumer)
    ((args, done, _failed),) = consumer.calls
    assert args[1:3] == ("q", "0|") and [task_id for task_id, _, _ in args[3]] == ["t0", "t1", "t2"]
    assert consumer.slots == 3  # each held message widened the prefetch by one
    done([(ACK, ""), (REQUEUE, ""), (DEAD, "bad job")])
    assert [m.done for m in messages] == ["acked", "requeued", ""]
    assert dead == [(messages[2], "bad job")]
    assert consumer.slots == 0


def test_a_lost_pool_process_hands_its_whole_batch_back(runner: BatchRunner) -> None:
    batcher = Batcher(runner, lambda *_: None)
    batcher.set_size("q", 2)
    consumer = Consumer()
    messages = [Message({"id": f"t{n}"}) for n in range(2)]
    for message in messages:
        batcher.hold(message, "q", "0|", consumer)
    ((_args, _done, failed),) = consumer.calls
    failed(RuntimeError("worker lost"))
    assert [m.done for m in messages] == ["requeued", "requeued"]
    assert consumer.slots == 0
