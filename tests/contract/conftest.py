"""The strategy contract runs over every broker and every store, on the pairs in ``PAIRS``.

Brokers: the embedded default (``filesystem://``), real Redis, real RabbitMQ. Stores: SQLite
(a file of the session's), PostgreSQL (a schema of the session's, dropped after it) and Redis (a
key prefix of the session's, its keys deleted after it; never a flush). Seven of the nine
pairs run: each server broker with each store, and the embedded broker with SQLite.

    embedded + sqlite      the embedded default: no server at all
    redis    + sqlite | redis | postgres
    rabbitmq + sqlite | redis | postgres

Left out: the embedded broker with PostgreSQL or Redis, an unlikely deployment (the embedded
broker is for machines without servers), whose stores the server brokers already cover. They
are the costly ones: an embedded pair takes about 250 s of test time (mostly sleeping: the
``filesystem://`` worker applies a queue change only between its 2-second polls), a server
pair 15 to 55 s; the two would add about 500 s, a minute and a half of wall time at -n 6.

One strategy (with its embedded threads-pool worker, concurrency 1) lives per pair and per
xdist worker; pytest tears it down before the next pair's starts, so one embedded worker
exists per process at a time. Each test uses its own queue names and deletes their celery
queues afterwards.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import pytest
from celery import Celery

from adapter import CeleryJobQueueStrategy, Job
from adapter.celery.embedded import filesystem_transport_options
from adapter.store.base import JobStore
from adapter.store.redis.store import RedisJobStore
from adapter.store.sql.store import SqlJobStore
from tests.support import (
    PROCESS_TAG,
    delete_queues,
    delete_redis_keys,
    postgres_schema,
    unique_queue,
)


@dataclass(frozen=True)
class Pair:
    """A broker and a store the strategy contract runs on."""

    broker: str
    store: str

    def __str__(self) -> str:
        return f"{self.broker}-{self.store}"


#: The (broker, store) pairs of the strategy contract; see the module docstring for why these.
PAIRS: Final = (
    Pair("embedded", "sqlite"),
    Pair("redis", "sqlite"),
    Pair("redis", "redis"),
    Pair("redis", "postgres"),
    Pair("rabbitmq", "sqlite"),
    Pair("rabbitmq", "redis"),
    Pair("rabbitmq", "postgres"),
)

#: Server fixture and marker of each broker and store that needs one.
_SERVER = {"redis": "redis_url", "rabbitmq": "amqp_url", "postgres": "postgres_url"}
_MARK = {"redis": pytest.mark.redis, "rabbitmq": pytest.mark.rabbitmq}
_STORE_MARK = {"redis": pytest.mark.redis, "postgres": pytest.mark.postgres}


def _marks(pair: Pair) -> list[pytest.MarkDecorator]:
    return [
        mark for mark in (_MARK.get(pair.broker), _STORE_MARK.get(pair.store)) if mark is not None
    ]


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
    return {"broker_url": request.getfixturevalue(_SERVER[broker]), "broker_transport_options": {}}


@pytest.fixture(
    scope="session", params=[pytest.param(pair, id=str(pair), marks=_marks(pair)) for pair in PAIRS]
)
def pair(request: pytest.FixtureRequest) -> Pair:
    """The broker and store the contract runs on."""
    return request.param  # type: ignore[no-any-return]


@pytest.fixture(scope="session")
def open_job_store(
    pair: Pair, request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Callable[[], JobStore]]:
    """Opens the pair's store, as another process would: the same file, schema or key prefix."""
    if pair.store == "sqlite":
        path = tmp_path_factory.mktemp(f"store-{pair}") / "jobs.sqlite3"
        yield lambda: SqlJobStore(f"sqlite:///{path}")
    elif pair.store == "postgres":
        with postgres_schema(request.getfixturevalue("postgres_url"), "contract") as url:
            yield lambda: SqlJobStore(url)
    else:
        redis_url: str = request.getfixturevalue("redis_url")
        prefix = f"adapter-contract-{PROCESS_TAG}"
        yield lambda: RedisJobStore(redis_url, prefix=prefix)
        delete_redis_keys(redis_url, prefix)


@pytest.fixture(scope="session")
def backoff() -> BackoffRecorder:
    """The recording backoff shared by every strategy of the session."""
    return BackoffRecorder()


@pytest.fixture(scope="session")
def strategy(
    pair: Pair,
    open_job_store: Callable[[], JobStore],
    backoff: BackoffRecorder,
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[CeleryJobQueueStrategy]:
    """A strategy on the pair's broker and store whose ``start`` runs an embedded worker here."""
    folder = tmp_path_factory.mktemp(f"contract-{pair}")
    app = Celery(f"contract-{pair}-{PROCESS_TAG}")
    app.config_from_object("celeryconfig")
    app.conf.update(
        _broker_settings(pair.broker, request, folder),
        control_exchange=f"adapter-test-ctl-{pair}-{PROCESS_TAG}",
        event_exchange=f"adapter-test-ev-{pair}-{PROCESS_TAG}",
    )
    made = CeleryJobQueueStrategy(
        app, store=open_job_store(), backoff_strategy=backoff, embedded_worker=True
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
