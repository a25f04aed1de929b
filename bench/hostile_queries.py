"""Time the hostile ``find_many`` queries of issue 11 and count what other threads got meanwhile.

Usage: ``python bench/hostile_queries.py [--jobs 50000] [--skip-redos] [--skip-scan]``

1. ReDoS: ``{"queueName": {"regex": "^([a-z-]+)+!"}}`` over one job whose queue name has 28
   letters, on SQLite (a temp file), PostgreSQL and Redis. Printed per store: the seconds the
   call took, how it ended (a page or the error's class) and the ticks a second thread of this
   process counted meanwhile (a thread frozen by the GIL counts few).
2. Unindexed Redis query: ``--jobs`` jobs, then ``take=1`` sorted by progress (no index
   answers it), and again with the store's ``SCAN_LIMIT`` jobs when ``--jobs`` is above it.
   Printed: seconds, peak Python memory (tracemalloc) and how it ended.

Servers: Redis and PostgreSQL on 127.0.0.1 (``tests/servers.py``); a store that cannot be
reached is skipped. Keys and schemas are the run's own and deleted afterwards.
"""

from __future__ import annotations

import argparse
import functools
import sys
import tempfile
import threading
import time
import tracemalloc
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from adapter.errors import JobQueueError
from adapter.job import Job
from adapter.store.base import JobStore
from adapter.store.redis.store import SCAN_LIMIT, RedisJobStore
from adapter.store.sql.store import SqlJobStore
from tests.servers import POSTGRES_URL, REDIS_URL
from tests.support import delete_redis_keys, postgres_schema

#: Each ReDoS pattern and the queue name it is tried on: issue 11's (nested quantifiers), and
#: one without nested quantifiers that backtracks as badly (overlapping alternatives).
REDOS = [("^([a-z-]+)+!", "a" * 28), ("(a|aa)+$", "a" * 60 + "-")]


class Ticker:
    """A thread that counts while a call runs: the other threads' share of the process."""

    def __init__(self) -> None:
        self.ticks = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.ticks += 1
            time.sleep(0.001)

    def __enter__(self) -> Ticker:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def timed(call: Callable[[], Any]) -> tuple[float, str, int]:
    """Return seconds, outcome and the ticks of a second thread while ``call`` ran."""
    with Ticker() as ticker:
        started = time.perf_counter()
        try:
            page = call()
            outcome = f"page of {len(page.items)} (total {page.total_items})"
        except JobQueueError as err:
            outcome = f"{type(err).__name__}: {str(err)[:110]}"
        elapsed = time.perf_counter() - started
    return elapsed, outcome, ticker.ticks


@contextmanager
def stores() -> Iterator[Iterator[tuple[str, JobStore]]]:
    """Yield the reachable stores, each empty; delete what they held afterwards."""
    folder = tempfile.mkdtemp(prefix="hostile-")
    prefix = f"bench-hostile-{uuid.uuid4().hex[:8]}"

    def each() -> Iterator[tuple[str, JobStore]]:
        yield "sqlite", SqlJobStore(f"sqlite:///{folder}/jobs.sqlite3")
        try:
            with postgres_schema(POSTGRES_URL, "hostile") as url:
                yield "postgres", SqlJobStore(url)
        except Exception as err:  # a missing server skips its store
            print(f"postgres: skipped ({type(err).__name__})")
        yield "redis", RedisJobStore(REDIS_URL, prefix=prefix)

    try:
        yield each()
    finally:
        delete_redis_keys(REDIS_URL, prefix)


def redos() -> None:
    """Print the ReDoS figures per pattern and store."""
    for pattern, queue_name in REDOS:
        print(f"ReDoS regex {pattern!r} over a {len(queue_name)}-character queue name")
        options = {"filter": {"queueName": {"regex": pattern}}}
        with stores() as found:
            for name, store in found:
                store.insert(Job(id=uuid.uuid4().hex, queue_name=queue_name, data={}))
                elapsed, outcome, ticks = timed(functools.partial(store.find_many, options))
                print(f"  {name:<9} {elapsed:7.2f} s  other thread {ticks:6d} ticks  {outcome}")
                store.close()


def unindexed_scan(count: int) -> None:
    """Print the figures of ``take=1`` sorted by progress over ``count`` Redis jobs."""
    prefix = f"bench-hostile-{uuid.uuid4().hex[:8]}"
    store = RedisJobStore(REDIS_URL, prefix=prefix)
    try:
        for start in range(0, count, 5000):
            batch = range(start, min(count, start + 5000))
            store.insert_many([Job(id=f"s-{n}", queue_name="scan", data={"n": n}) for n in batch])
        options = {"take": 1, "sort": {"progress": "DESC"}}
        tracemalloc.start()
        elapsed, outcome, ticks = timed(lambda: store.find_many(options))
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        print(f"Redis, take=1 sorted by progress over {count} jobs")
        figures = f"{elapsed:7.2f} s  peak {peak / 2**20:6.1f} MiB  other thread {ticks} ticks"
        print(f"  {figures}  {outcome}")
    finally:
        store.close()
        delete_redis_keys(REDIS_URL, prefix)


def main() -> None:
    """Run the chosen measurements."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=50_000)
    parser.add_argument("--skip-redos", action="store_true")
    parser.add_argument("--skip-scan", action="store_true")
    args = parser.parse_args()
    if not args.skip_redos:
        redos()
    if not args.skip_scan:
        unindexed_scan(args.jobs)
        if args.jobs > SCAN_LIMIT:
            unindexed_scan(SCAN_LIMIT)


if __name__ == "__main__":
    main()
