"""The strategy contract runs once per broker: embedded default, real Redis, real RabbitMQ.

One strategy (with its embedded threads-pool worker, concurrency 1) lives per broker; pytest
tears it down before the next broker's starts, so one embedded worker exists at a time.
Each test uses its own queue names and deletes their celery queues afterwards.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from celery import Celery

from adapter import CeleryJobQueueStrategy, Job
from adapter.celery.embedded import filesystem_transport_options
from tests.support import delete_queues, unique_queue


class BackoffRecorder:
    """A backoff strategy that records every call, with the job's stored state at that time."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, int, str, str | None]] = []
        self.strategy: CeleryJobQueueStrategy | None = None

    def __call__(self, queue_name: str, attempts_made: int, job: Job) -> float:
        stored = self.strategy.find_one(job.id or "") if self.strategy else None
        state = stored.state.value if stored is not None else None
        self.calls.append((queue_name, attempts_made, job.id or "", state))
        return 10

    def for_queue(self, queue_name: str) -> list[tuple[str, int, str, str | None]]:
        """Return the calls made for ``queue_name``."""
        return [call for call in self.calls if call[0] == queue_name]


def _broker_settings(broker: str, request: pytest.FixtureRequest, folder: Path) -> dict[str, Any]:
    if broker == "embedded":
        return {
            "broker_url": "filesystem://",
            "broker_transport_options": filesystem_transport_options(str(folder)),
        }
    url = request.getfixturevalue("redis_url" if broker == "redis" else "amqp_url")
    return {"broker_url": url, "broker_transport_options": {}}


@pytest.fixture(scope="session", params=["embedded", "redis", "rabbitmq"])
def broker(request: pytest.FixtureRequest) -> str:
    """The broker the contract runs on."""
    return str(request.param)


@pytest.fixture(scope="session")
def backoff() -> BackoffRecorder:
    """The recording backoff shared by every strategy of the session."""
    return BackoffRecorder()


@pytest.fixture(scope="session")
def strategy(
    broker: str,
    backoff: BackoffRecorder,
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[CeleryJobQueueStrategy]:
    """A strategy on ``broker`` whose ``start`` runs an embedded worker in this process."""
    folder = tmp_path_factory.mktemp(f"contract-{broker}")
    app = Celery(f"contract-{broker}-{os.getpid()}")
    app.config_from_object("celeryconfig")
    app.conf.update(
        _broker_settings(broker, request, folder),
        control_exchange=f"adapter-test-ctl-{broker}",
        event_exchange=f"adapter-test-ev-{broker}",
    )
    made = CeleryJobQueueStrategy(
        app, store=f"sqlite:///{folder / 'jobs.sqlite3'}", backoff_strategy=backoff
    )
    backoff.strategy = made
    yield made
    made.destroy()
    backoff.strategy = None


@pytest.fixture
def queue(strategy: CeleryJobQueueStrategy, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh queue name; its celery queue is deleted after the test."""
    name = unique_queue(request.node.name.split("[")[0].removeprefix("test_")[:30])
    yield name
    delete_queues(strategy, name)


@pytest.fixture
def run(strategy: CeleryJobQueueStrategy) -> Iterator[Any]:
    """``run(queue_name, process)`` starts a queue and stops it after the test."""
    started: list[tuple[str, Any]] = []

    def start(queue_name: str, process: Any) -> None:
        strategy.start(queue_name, process)
        started.append((queue_name, process))

    yield start
    for queue_name, process in started:
        strategy.stop(queue_name, process)
