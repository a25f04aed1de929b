"""Metric totals in every shared store add up exactly across processes, forked ones included.

A parent counts, forks children that count and flush, then flushes: the totals are the sum,
nothing counted twice (a child never flushes its parent's pending counts) nor lost.
"""

from __future__ import annotations

import multiprocessing
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from adapter.metrics.recorder import MetricsRecorder
from adapter.metrics.storage import metrics_storage
from adapter.store.base import JobStore
from adapter.store.redis.store import RedisJobStore
from adapter.store.sql.store import SqlJobStore
from tests.factories import make_job
from tests.support import delete_redis_keys, postgres_schema

CHILDREN = 3
PER_CHILD = 50


@pytest.fixture(
    params=[
        "sqlite",
        pytest.param("postgres", marks=pytest.mark.postgres),
        pytest.param("redis", marks=pytest.mark.redis),
    ]
)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[JobStore]:
    """An empty shared store of each kind."""
    if request.param == "sqlite":
        opened: JobStore = SqlJobStore(f"sqlite:///{tmp_path / 'jobs.sqlite3'}")
        yield opened
        opened.close()
    elif request.param == "postgres":
        with postgres_schema(request.getfixturevalue("postgres_url"), "metrics") as url:
            opened = SqlJobStore(url)
            yield opened
            opened.close()
    else:
        redis_url: str = request.getfixturevalue("redis_url")
        prefix = f"adapter-metrics-{uuid.uuid4().hex[:12]}"
        opened = RedisJobStore(redis_url, prefix=prefix)
        yield opened
        opened.close()
        delete_redis_keys(redis_url, prefix)


def _count_in_child(recorder: MetricsRecorder) -> None:
    recorder.cancelled(make_job(queue_name="q") for _ in range(PER_CHILD))
    recorder.worker_up(f"child-{multiprocessing.current_process().pid}")
    recorder.flush()


def test_counts_of_forked_processes_add_up_exactly(store: JobStore) -> None:
    recorder = MetricsRecorder(metrics_storage(store), flush_every=3600)
    recorder.cancelled(make_job(queue_name="q") for _ in range(5))  # pending while forking
    context = multiprocessing.get_context("fork")
    children = [context.Process(target=_count_in_child, args=(recorder,)) for _ in range(CHILDREN)]
    for child in children:
        child.start()
    for child in children:
        child.join(60)
        assert child.exitcode == 0
    recorder.flush()
    totals, workers = metrics_storage(store).read()
    assert totals == {"c|cancelled|q": 5 + CHILDREN * PER_CHILD}
    assert len(workers) == CHILDREN


def test_sums_of_seconds_add_up_and_worker_marks_are_removed(store: JobStore) -> None:
    storage = metrics_storage(store)
    storage.write({"s|run_seconds|q": 0.25, "b|run_seconds|q|3": 1}, {"w": 100.0})
    storage.write({"s|run_seconds|q": 0.5, "b|run_seconds|q|3": 2}, {"w": None, "v": 5.0})
    assert storage.read() == ({"s|run_seconds|q": 0.75, "b|run_seconds|q|3": 3}, {"v": 5.0})
