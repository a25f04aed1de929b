"""Result latency: add one no-op job and wait for its result, beside raw Celery, same run.

Usage: ``python bench/latency.py [--broker redis|amqp|all] [--store redis|postgres|all]
[--jobs 200] [--runs 3] [--pg-options "-csynchronous_commit=off"]``

One ``celery worker -P prefork -c 2`` consumes both sides' celery queues. Each round trip is
timed on the caller's side, one at a time (never two in flight), the two sides alternating:
the adapter ``strategy.add(Job(...))`` then ``job.wait_for_result()`` (the pushed path: Redis
pub/sub or PostgreSQL LISTEN/NOTIFY), raw Celery ``app.send_task(...)`` then
``AsyncResult.get()`` (its Redis result backend, which waits on Redis pub/sub too). Prints
p50 and p95 of each side, the ratio and the difference of the p50s (target: adapter p50 at
most raw p50 + 1 ms), per run and as the median and spread of the runs.

The Redis store is the adapter's in Redis db 12 (the results' database); PostgreSQL runs in a
schema of this run's in the ``test`` database, dropped afterwards. Queues are unique per run
and deleted afterwards, with the raw results and the adapter's jobs.
"""

from __future__ import annotations

import argparse
import socket
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import redis
import sqlalchemy as sa
from celery import Celery

from adapter import CeleryJobQueueStrategy, Job
from bench.common import (
    BROKER_URLS,
    ENV_ADAPTER_QUEUE,
    ENV_BROKER,
    ENV_RESULT,
    ENV_STORE,
    RAW_TASK_NAME,
    RESULT_URL,
    RunNames,
    clean_redis_broker,
    delete_result_keys,
    make_app,
    new_run_names,
    purge_queues,
)
from bench.drain import running_worker, worker_command

#: The PostgreSQL database the benchmark's schema is made in.
POSTGRES_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
#: Seconds one round trip may take before the run fails.
ROUND_TRIP_TIMEOUT_S = 10.0
#: Seconds the worker may take to start and run its first job of each side.
START_TIMEOUT_S = 60.0
#: Untimed round trips of each side before timing (connections, pool children, listeners).
WARM_ROUNDS = 20
#: Target: adapter p50 at most raw p50 plus this many milliseconds.
TARGET_EXTRA_MS = 1.0


@dataclass(frozen=True)
class Latencies:
    """Round-trip times of both sides of one run, in milliseconds."""

    adapter: list[float]
    raw: list[float]


def percentile(values: list[float], fraction: float) -> float:
    """Return the value at ``fraction`` of the sorted values (nearest rank)."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(fraction * len(ordered)) - 1))]


@contextmanager
def store_url_for(kind: str, tag: str, pg_options: str = "") -> Iterator[str]:
    """Yield the adapter's store URL for ``kind``; a PostgreSQL schema is dropped after."""
    if kind == "redis":
        yield RESULT_URL
        return
    schema = f"bench_latency_{tag}"
    admin = sa.create_engine(POSTGRES_URL)
    try:
        with admin.begin() as conn:
            conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
        url = sa.make_url(POSTGRES_URL).update_query_dict(
            {"options": f"-csearch_path={schema} {pg_options}".strip()}
        )
        yield url.render_as_string(hide_password=False)
        with admin.begin() as conn:
            conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
    finally:
        admin.dispose()


def round_trips(
    strategy: CeleryJobQueueStrategy, app: Celery, names: RunNames, jobs: int, raw_ids: list[str]
) -> Latencies:
    """Time ``jobs`` round trips of each side, alternating, one at a time."""

    def adapter_round() -> None:
        job = strategy.add(Job(queue_name=names.queue_name, data=None))
        job.wait_for_result(timeout=ROUND_TRIP_TIMEOUT_S)

    def raw_round() -> None:
        sent = app.send_task(RAW_TASK_NAME, queue=names.raw_queue)
        raw_ids.append(sent.id)
        sent.get(timeout=ROUND_TRIP_TIMEOUT_S)

    sides: list[tuple[Callable[[], None], list[float]]] = [(adapter_round, []), (raw_round, [])]
    for index in range(jobs):
        for round_trip, times in sides if index % 2 == 0 else reversed(sides):
            started = time.perf_counter()
            round_trip()
            times.append((time.perf_counter() - started) * 1000)
    return Latencies(adapter=sides[0][1], raw=sides[1][1])


def run_once(broker: str, store_kind: str, jobs: int, pg_options: str = "") -> Latencies:
    """Start a worker on both sides' queues, warm up, time the round trips, clean up."""
    url = BROKER_URLS[broker]
    names = new_run_names()
    hostname = f"bench-latency-{names.tag}@{socket.gethostname()}"
    raw_ids: list[str] = []
    with store_url_for(store_kind, names.tag, pg_options) as store_url:
        app = make_app(url, store_url, RESULT_URL)
        strategy = CeleryJobQueueStrategy(app, store=store_url)
        queues = [names.adapter_celery_queue, names.raw_queue]
        env = {
            ENV_BROKER: url,
            ENV_STORE: store_url,
            ENV_RESULT: RESULT_URL,
            ENV_ADAPTER_QUEUE: names.queue_name,
        }
        try:
            purge_queues(app, names.all_celery_queues())
            with running_worker(worker_command(",".join(queues), hostname), env):
                first = strategy.add(Job(queue_name=names.queue_name, data=None))
                first.wait_for_result(timeout=START_TIMEOUT_S)
                app.send_task(RAW_TASK_NAME, queue=names.raw_queue).get(timeout=START_TIMEOUT_S)
                round_trips(strategy, app, names, WARM_ROUNDS, raw_ids)
                return round_trips(strategy, app, names, jobs, raw_ids)
        finally:
            _clean(app, strategy, broker, url, names, hostname, raw_ids)


def _clean(
    app: Celery,
    strategy: CeleryJobQueueStrategy,
    broker: str,
    url: str,
    names: RunNames,
    hostname: str,
    raw_ids: list[str],
) -> None:
    """Delete this run's queues, raw results and adapter jobs (nothing else: all is shared)."""
    purge_queues(app, names.all_celery_queues(), delete=True)
    with redis.Redis.from_url(RESULT_URL) as results:
        delete_result_keys(results, raw_ids)
    if broker == "redis":
        with redis.Redis.from_url(url) as broker_client:
            clean_redis_broker(broker_client, names.all_celery_queues(), [hostname])
    strategy.remove_settled_jobs([names.queue_name])
    strategy.destroy()
    app.close()


def format_run(label: str, result: Latencies) -> str:
    """Return one line: each side's p50 and p95, the p50 ratio and difference."""
    a50, r50 = percentile(result.adapter, 0.5), percentile(result.raw, 0.5)
    a95, r95 = percentile(result.adapter, 0.95), percentile(result.raw, 0.95)
    verdict = "ok" if a50 <= r50 + TARGET_EXTRA_MS else "ABOVE"
    return (
        f"{label:28}{a50:>9.2f}{a95:>9.2f}{r50:>9.2f}{r95:>9.2f}"
        f"{a50 / r50:>9.2f}x{a50 - r50:>+10.2f}  {verdict}"
    )


def summary(results: list[Latencies]) -> str:
    """Return the median and spread (min to max) of the runs' p50s, and their p95s' medians."""
    a50 = [percentile(result.adapter, 0.5) for result in results]
    r50 = [percentile(result.raw, 0.5) for result in results]
    a95 = statistics.median(percentile(result.adapter, 0.95) for result in results)
    r95 = statistics.median(percentile(result.raw, 0.95) for result in results)
    diffs = [a - r for a, r in zip(a50, r50, strict=True)]
    return (
        f"  median of {len(results)} runs: adapter p50 {statistics.median(a50):.2f} ms "
        f"({min(a50):.2f}-{max(a50):.2f}), raw p50 {statistics.median(r50):.2f} ms "
        f"({min(r50):.2f}-{max(r50):.2f}), adapter - raw {statistics.median(diffs):+.2f} ms "
        f"({min(diffs):+.2f} to {max(diffs):+.2f}), ratio "
        f"{statistics.median(a / r for a, r in zip(a50, r50, strict=True)):.2f}x; "
        f"p95 adapter {a95:.2f} ms, raw {r95:.2f} ms"
    )


def main(argv: list[str] | None = None) -> int:
    """Parse the command line and print one table per broker and store."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--broker", choices=[*BROKER_URLS, "all"], default="all")
    parser.add_argument("--store", choices=["redis", "postgres", "all"], default="all")
    parser.add_argument("--jobs", type=int, default=200, help="round trips per side")
    parser.add_argument("--runs", type=int, default=3, help="runs per broker and store")
    parser.add_argument(
        "--pg-options", default="",
        help='PostgreSQL session options of the store, e.g. "-csynchronous_commit=off"',
    )  # fmt: skip
    args = parser.parse_args(argv)
    brokers = list(BROKER_URLS) if args.broker == "all" else [args.broker]
    stores = ["redis", "postgres"] if args.store == "all" else [args.store]
    print(
        f"round trip of one no-op job, {args.jobs} sequential per side, alternating; "
        "milliseconds. adapter: add + wait_for_result; raw: send_task + AsyncResult.get\n"
        f"{'':28}{'ad p50':>9}{'ad p95':>9}{'raw p50':>9}{'raw p95':>9}{'ratio':>10}"
        f"{'ad-raw':>10}  target p50 <= raw + {TARGET_EXTRA_MS:g} ms"
    )
    for broker in brokers:
        for store in stores:
            results = []
            for run in range(args.runs):
                results.append(run_once(broker, store, args.jobs, args.pg_options))
                label = f"{broker} broker, {store} store #{run + 1}"
                print(format_run(label, results[-1]), flush=True)
            print(summary(results), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
