"""The watchdog's decisions without a worker: fake requests in Celery's active set, one round
at a time (``Watchdog.look``); what it records in the store and what it asks the pool to do."""

from __future__ import annotations

import logging
import signal
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from celery.worker import state as worker_state

from adapter import CeleryJobQueueStrategy, Job, JobState
from adapter.celery.envelope import TASK_NAME, TIMEOUT_FIELD
from adapter.celery.watchdog import TIMED_OUT_MARK, Watchdog
from adapter.deadlines import Timeouts
from tests.support import memory_strategy


@dataclass
class Pool:
    killed: list[tuple[int, int]] = field(default_factory=list)

    def terminate_job(self, pid: int, signum: int) -> None:
        self.killed.append((pid, signum))


@dataclass
class Hub:
    soon: list[Callable[[], None]] = field(default_factory=list)

    def call_soon(self, run: Callable[[], None]) -> None:
        self.soon.append(run)


@dataclass
class Consumers:
    pool_is_prefork: bool
    pool: Pool = field(default_factory=Pool)
    hub: Hub = field(default_factory=Hub)

    @property
    def consumer(self) -> Any:
        return self


@dataclass(eq=False)
class FakeRequest:
    """What the watchdog reads of Celery's ``Request``, and the calls it makes on one."""

    id: str
    task: Any
    time_start: float
    request_dict: dict[str, Any]
    name: str = TASK_NAME
    worker_pid: int = 4242
    acknowledged: bool = False
    terminated: list[int] = field(default_factory=list)

    def acknowledge(self) -> None:
        self.acknowledged = True

    def terminate(self, pool: Pool, signum: int) -> None:
        self.terminated.append(signum)


@pytest.fixture
def strategy() -> Iterator[CeleryJobQueueStrategy]:
    with memory_strategy("watchdog") as made:
        yield made


@pytest.fixture
def active() -> Iterator[set[Any]]:
    """Requests put in Celery's active set for one test."""
    added: set[Any] = set()
    yield added
    for request in added:
        worker_state.active_requests.discard(request)


def running(
    strategy: CeleryJobQueueStrategy, active: set[Any], timeout: float | None, ran_for: float
) -> FakeRequest:
    job = strategy.lifecycle.claim(Job(id=uuid.uuid4().hex, queue_name="slow"))
    assert job is not None and job.id is not None
    request = FakeRequest(job.id, strategy._task, time.time() - ran_for, {TIMEOUT_FIELD: timeout})
    worker_state.active_requests.add(request)
    active.add(request)
    return request


def watchdog(strategy: CeleryJobQueueStrategy, consumers: Consumers) -> Watchdog:
    return Watchdog(consumers, strategy._task, strategy.lifecycle, Timeouts(None, grace=0.05))


def test_a_request_past_timeout_and_grace_is_recorded_then_killed_on_prefork(
    strategy: CeleryJobQueueStrategy, active: set[Any]
) -> None:
    consumers = Consumers(pool_is_prefork=True)
    late = running(strategy, active, timeout=1, ran_for=2)
    in_time = running(strategy, active, timeout=60, ran_for=2)
    dog = watchdog(strategy, consumers)
    dog.look()
    stored = strategy.find_one(late.id)
    assert stored is not None and (stored.state, stored.error) == (
        JobState.FAILED,
        "timed out after 1 s",
    )
    assert len(consumers.hub.soon) == 1  # the kill waits for the event loop
    consumers.hub.soon.pop()()
    assert late.acknowledged and getattr(late, TIMED_OUT_MARK)
    assert consumers.pool.killed == [(late.worker_pid, signal.SIGKILL)]
    dog.look()  # once per attempt
    assert consumers.hub.soon == []
    left = strategy.find_one(in_time.id)
    assert left is not None and left.state == JobState.RUNNING and not in_time.acknowledged


def test_a_cancelled_request_is_killed_after_the_grace_as_celery_terminates(
    strategy: CeleryJobQueueStrategy, active: set[Any]
) -> None:
    consumers = Consumers(pool_is_prefork=True)
    request = running(strategy, active, timeout=None, ran_for=1)
    strategy.cancel_job(request.id)
    dog = watchdog(strategy, consumers)
    dog.look()  # the cancel is seen: the grace starts
    assert consumers.hub.soon == []
    time.sleep(0.06)  # the grace of this watchdog
    dog.look()
    consumers.hub.soon.pop()()
    assert request.acknowledged and request.terminated == [signal.SIGKILL]
    stored = strategy.find_one(request.id)
    assert stored is not None and stored.state == JobState.CANCELLED


def test_on_other_pools_the_timeout_is_recorded_and_nothing_killed(
    strategy: CeleryJobQueueStrategy, active: set[Any], caplog: pytest.LogCaptureFixture
) -> None:
    consumers = Consumers(pool_is_prefork=False)
    request = running(strategy, active, timeout=1, ran_for=2)
    with caplog.at_level(logging.WARNING, logger="adapter.celery.watchdog"):
        watchdog(strategy, consumers).look()
    stored = strategy.find_one(request.id)
    assert stored is not None and stored.error == "timed out after 1 s"
    assert consumers.hub.soon == [] and not request.acknowledged
    assert "cannot stop a running job on the Pool pool" in caplog.text
