"""Bulk add rate: ``strategy.add_many(jobs)`` beside one-by-one ``strategy.add(job)``, same run.

Usage: ``python bench/add_many.py [--broker redis|amqp|all] [--jobs 20000] [--batch 1000]
[--store redis|sqlite]``

Both sides use one strategy on one app and run in alternating blocks (one-by-one, bulk, bulk,
one-by-one, ...), so drift on a shared machine falls on both evenly. Each timed block builds
its jobs (``Job(queue_name, data)``, as a caller does) and ends with ``flush()``: every job is
in the store, so the batched store writes are timed on the side that made them. The bulk side
calls ``add_many`` with ``--batch`` jobs at a time. Queues are unique per run and deleted
afterwards, with the store's keys (under a prefix of the run's own) or temp dir.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import redis
from celery import Celery

from adapter import CeleryJobQueueStrategy, Job
from adapter.store.redis.store import RedisJobStore
from bench.add_rate import add_adapter_jobs
from bench.common import BROKER_URLS, RESULT_URL, job_data, make_app, new_run_names

#: Ratio bulk/one-by-one the project aims for (issue 13).
TARGET = 10.0
#: Jobs each side adds before timing, to open connections and the store.
WARM_UP_JOBS = 200


@dataclass
class BulkResult:
    """Seconds each side took for the same number of jobs."""

    broker: str
    jobs: int
    batch: int
    one_by_one_seconds: float = 0.0
    bulk_seconds: float = 0.0


def add_bulk(
    strategy: CeleryJobQueueStrategy, queue_name: str, first: int, count: int, batch: int
) -> float:
    """Add ``count`` jobs with ``add_many``, ``batch`` at a time; return the seconds it took."""
    started = time.perf_counter()
    for start in range(first, first + count, batch):
        end = min(start + batch, first + count)
        strategy.add_many([Job(queue_name=queue_name, data=job_data(n)) for n in range(start, end)])
    strategy.flush()
    return time.perf_counter() - started


def run_broker(broker: str, jobs: int, batch: int, store_kind: str, blocks: int = 10) -> BulkResult:
    """Time both sides on one broker, in alternating blocks, and clean up after them."""
    names = new_run_names()
    tmp = Path(tempfile.mkdtemp(prefix="adapter-bench-"))
    store_url = f"sqlite:///{tmp / 'jobs.sqlite3'}" if store_kind == "sqlite" else RESULT_URL
    app = make_app(BROKER_URLS[broker], store_url)
    prefix = f"bench-{names.tag}"  # the run's own keys: other stores in db 12 keep theirs
    store = RedisJobStore(RESULT_URL, prefix=prefix) if store_kind == "redis" else store_url
    strategy = CeleryJobQueueStrategy(app, store=store)
    one_queue, bulk_queue = names.queue_name, f"{names.queue_name}-bulk"
    queues = [f"jobs.{one_queue}", f"jobs.{bulk_queue}"]
    result = BulkResult(broker, jobs, batch)
    try:
        add_adapter_jobs(strategy, one_queue, 0, WARM_UP_JOBS, [])
        add_bulk(strategy, bulk_queue, 0, WARM_UP_JOBS, batch)
        block = max(jobs // blocks, 1)
        for number, first in enumerate(range(0, jobs, block)):
            count = min(block, jobs - first)
            sides = ("one", "bulk") if number % 2 == 0 else ("bulk", "one")
            for side in sides:
                if side == "one":
                    result.one_by_one_seconds += add_adapter_jobs(
                        strategy, one_queue, first, count, []
                    )
                else:
                    result.bulk_seconds += add_bulk(strategy, bulk_queue, first, count, batch)
        return result
    finally:
        delete_queues(app, queues)
        if store_kind == "redis":
            with redis.Redis.from_url(RESULT_URL) as client:
                for key in client.scan_iter(f"{prefix}:*"):
                    client.delete(key)
        strategy.destroy()
        app.close()
        shutil.rmtree(tmp, ignore_errors=True)


def delete_queues(app: Celery, queues: list[str]) -> None:
    """Delete the run's celery queues with their messages (a purge would cancel every job)."""
    with app.connection_for_write() as connection:
        for name in queues:
            connection.default_channel.queue_delete(name)


def format_result(result: BulkResult) -> str:
    """Return the lines for one broker: jobs/s of each side and the ratio."""
    one = result.jobs / result.one_by_one_seconds
    bulk = result.jobs / result.bulk_seconds
    ratio = bulk / one
    verdict = "ok" if ratio >= TARGET else "BELOW"
    return (
        f"broker {result.broker} | jobs per side: {result.jobs} | add_many batch: {result.batch}\n"
        f"{'':28}{'add':>10}{'add_many':>10}{'ratio':>9}{'target':>9}\n"
        f"{'jobs/s':28}{one:>10,.0f}{bulk:>10,.0f}{ratio:>8.2f}x{f'>={TARGET:.0f}x':>9}  {verdict}"
    )


def main(argv: list[str] | None = None) -> int:
    """Parse the command line, run the chosen brokers and print one table each."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--broker", choices=[*BROKER_URLS, "all"], default="all")
    parser.add_argument("--jobs", type=int, default=20_000, help="jobs per side (default 20000)")
    parser.add_argument("--batch", type=int, default=1000, help="jobs per add_many call")
    parser.add_argument("--store", choices=["redis", "sqlite"], default="redis")
    args = parser.parse_args(argv)
    brokers = list(BROKER_URLS) if args.broker == "all" else [args.broker]
    for broker in brokers:
        result = run_broker(broker, args.jobs, args.batch, args.store)
        print(format_result(result), end="\n\n", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
