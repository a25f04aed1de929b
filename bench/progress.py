"""What ``set_progress`` in a tight loop costs, on each store: before and after throttling.

Usage: ``python bench/progress.py [--calls 100000] [--sample 2000]``

"after" runs one job through ``Lifecycle.attempt`` whose process calls ``set_progress``
``--calls`` times, and counts the store writes it made. "before" is what one synchronous
write per call cost (the old behaviour): ``JobStore.set_progress`` timed over ``--sample``
calls and scaled to ``--calls``. Stores: SQLite in a temp dir, PostgreSQL (own schema, dropped)
and Redis (own key prefix, deleted) on 127.0.0.1; a store that cannot be reached is skipped.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from adapter.backoff import constant_backoff
from adapter.errors import JobQueueError
from adapter.job import Job
from adapter.lifecycle import Lifecycle, Liveness
from adapter.running import RunningJobs
from adapter.store.base import JobStore
from adapter.store.redis.store import RedisJobStore
from adapter.store.sql.store import SqlJobStore
from tests.support import postgres_schema

POSTGRES_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
REDIS_URL = "redis://127.0.0.1:6379/13"


class CountingWrites:
    """Counts the ``set_progress`` writes that reach a store."""

    def __init__(self, store: JobStore) -> None:
        self.store = store
        self.writes = 0
        self._write = store.set_progress

        def counted(job_id: str, progress: float) -> bool:
            self.writes += 1
            return self._write(job_id, progress)

        store.set_progress = counted  # type: ignore[method-assign]


def stores() -> Iterator[tuple[str, JobStore]]:
    """Yield each reachable store in turn, cleaned up after."""
    with tempfile.TemporaryDirectory() as folder:
        sqlite = SqlJobStore(f"sqlite:///{folder}/jobs.sqlite3")
        yield "SQLite", sqlite
        sqlite.close()
    try:
        with postgres_schema(POSTGRES_URL, "bench") as url:
            postgres = SqlJobStore(url)
            yield "PostgreSQL", postgres
            postgres.close()
    except Exception as err:  # a missing server skips the store
        print(f"PostgreSQL skipped: {err}")
    prefix = f"adapter-bench-{uuid.uuid4().hex[:8]}"
    redis_store = RedisJobStore(REDIS_URL, prefix=prefix)
    try:
        yield "Redis", redis_store
    finally:
        import redis

        client = redis.Redis.from_url(REDIS_URL)
        for key in client.scan_iter(match=f"{prefix}*"):
            client.delete(key)
        redis_store.close()


def before(store: JobStore, calls: int, sample: int) -> float:
    """Seconds ``calls`` synchronous writes would take, from ``sample`` of them."""
    job = store.claim(Job(id=uuid.uuid4().hex, queue_name="bench", data=None))
    assert job is not None
    started = time.perf_counter()
    for n in range(sample):
        store.set_progress(job.id or "", n % 100)
    return (time.perf_counter() - started) * calls / sample


def after(store: JobStore, calls: int) -> tuple[float, int]:
    """Seconds and store writes of a process calling ``set_progress`` ``calls`` times."""
    counting = CountingWrites(store)
    lifecycle = Lifecycle(store, Liveness(), constant_backoff(1000), RunningJobs(store))
    job = lifecycle.claim(Job(id=uuid.uuid4().hex, queue_name="bench", data=None))
    assert job is not None

    def process(running: Job) -> None:
        for n in range(calls):
            running.set_progress(n * 100 / calls)

    started = time.perf_counter()
    lifecycle.attempt(job, process)
    return time.perf_counter() - started, counting.writes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=100_000)
    parser.add_argument("--sample", type=int, default=2_000)
    args = parser.parse_args()
    print(f"{args.calls:,} set_progress calls in one job")
    print(f"{'store':<11} {'before (s)':>11} {'after (s)':>10} {'writes after':>13}")
    for name, store in stores():
        try:
            was = before(store, args.calls, args.sample)
            took, writes = after(store, args.calls)
        except JobQueueError as err:
            print(f"{name:<11} skipped: {err}")
            continue
        print(f"{name:<11} {was:>11.2f} {took:>10.3f} {writes:>13,}")


if __name__ == "__main__":
    main()
