"""Benchmark the adapter beside raw Celery, in the same run, and print the ratios.

Usage: ``python bench/run.py [--broker redis|amqp|all] [--jobs 10000] [--store redis|sqlite]``

For each broker: (a) the add rate of ``strategy.add`` (store: by default the Redis store in the
results' database, as the adapter chooses when Celery's result backend is Redis: the
like-for-like of raw Celery keeping its results there; or a SQLite file in a temp dir) against
``app.send_task`` with the same app and payload size; (b) the drain rate of
a ``celery worker -P prefork -c 2`` over the jobs (a) queued, the adapter until its store shows
all COMPLETED, raw Celery until every result is in Redis. Queues are unique per run, purged
before and after, then deleted with the result keys and the temp dir.
"""

from __future__ import annotations

import argparse
import shutil
import socket
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import redis
from celery import Celery

from adapter import CeleryJobQueueStrategy
from bench.add_rate import AddResult, measure_adds, warm_up
from bench.common import (
    BROKER_URLS,
    ENV_ADAPTER_QUEUE,
    ENV_BROKER,
    ENV_RESULT,
    ENV_STORE,
    RESULT_URL,
    RunNames,
    clean_redis_broker,
    delete_result_keys,
    make_app,
    new_run_names,
    purge_queues,
    queue_size,
)
from bench.drain import (
    DrainResult,
    drain,
    result_probe,
    store_probe,
    worker_command,
)

#: Ratios adapter/raw the project aims for.
ADD_TARGET = 1.0
DRAIN_TARGET = 0.8


@dataclass(frozen=True)
class BrokerReport:
    """Everything measured on one broker."""

    broker: str
    url: str
    store_url: str
    jobs: int
    adds: AddResult
    adapter_drain: DrainResult
    raw_drain: DrainResult


def run_broker(broker: str, jobs: int, store_kind: str) -> BrokerReport:
    """Run the add and drain benchmarks on one broker and clean up after them."""
    url = BROKER_URLS[broker]
    names = new_run_names()
    tmp = Path(tempfile.mkdtemp(prefix="adapter-bench-"))
    store_url = f"sqlite:///{tmp / 'jobs.sqlite3'}" if store_kind == "sqlite" else RESULT_URL
    app = make_app(url, store_url)
    strategy = CeleryJobQueueStrategy(app, store=store_url)
    results = redis.Redis.from_url(RESULT_URL)
    raw_ids: list[str] = []
    hostnames = [f"bench-{side}-{names.tag}@{socket.gethostname()}" for side in ("adapter", "raw")]
    try:
        purge_queues(app, names.all_celery_queues())
        warm_up(strategy, app, names)
        adds = measure_adds(strategy, app, names, jobs)
        raw_ids = adds.raw_ids
        _check_queued(app, names, jobs)
        env = {ENV_BROKER: url, ENV_STORE: store_url, ENV_RESULT: RESULT_URL}
        timeout = max(120.0, jobs / 20)
        adapter_drain = drain(
            worker_command(names.adapter_celery_queue, hostnames[0]),
            {**env, ENV_ADAPTER_QUEUE: names.queue_name},
            store_probe(strategy.store, names.queue_name, jobs), jobs, timeout,
        )  # fmt: skip
        raw_drain = drain(
            worker_command(names.raw_queue, hostnames[1]),
            env, result_probe(results, raw_ids), jobs, timeout,
        )  # fmt: skip
        return BrokerReport(broker, url, store_url, jobs, adds, adapter_drain, raw_drain)
    finally:
        purge_queues(app, names.all_celery_queues(), delete=True)
        delete_result_keys(results, raw_ids)
        if broker == "redis":
            with redis.Redis.from_url(url) as broker_client:
                clean_redis_broker(broker_client, names.all_celery_queues(), hostnames)
        if store_kind == "redis":
            for key in results.scan_iter("adapter:*"):  # the Redis store's keys in db 12
                results.delete(key)
        results.close()
        strategy.destroy()
        app.close()
        shutil.rmtree(tmp, ignore_errors=True)


def _check_queued(app: Celery, names: RunNames, jobs: int) -> None:
    """Fail early unless each side's celery queue holds exactly ``jobs`` messages."""
    for queue in (names.adapter_celery_queue, names.raw_queue):
        size = queue_size(app, queue)
        if size != jobs:
            raise RuntimeError(f"celery queue {queue} holds {size} messages, expected {jobs}")


def format_report(report: BrokerReport) -> str:
    """Return the table for one broker."""
    adds, ad, rd = report.adds, report.adapter_drain, report.raw_drain
    add_adapter = report.jobs / adds.adapter_seconds
    add_raw = report.jobs / adds.raw_seconds
    rows = [
        ("add (jobs/s)", add_adapter, add_raw, ADD_TARGET),
        ("drain (jobs/s, spawn -> all done)", ad.rate, rd.rate, DRAIN_TARGET),
        ("  drain after first job (jobs/s)", ad.rate_after_first, rd.rate_after_first, None),
    ]
    lines = [
        f"broker {report.broker}: {report.url} | jobs per side: {report.jobs}",
        f"adapter store: {report.store_url}",
        f"{'':36}{'adapter':>10}{'raw':>10}{'adapter/raw':>13}{'target':>9}",
    ]
    for label, adapter, raw, target in rows:
        ratio = adapter / raw
        verdict = "" if target is None else ("  ok" if ratio >= target else "  BELOW")
        goal = "" if target is None else f">={target:.1f}x"
        lines.append(f"{label:36}{adapter:>10,.0f}{raw:>10,.0f}{ratio:>12.2f}x{goal:>9}{verdict}")
    lines += [
        f"{'drain wall time (s)':36}{ad.seconds:>10.2f}{rd.seconds:>10.2f}",
        f"{'worker spawn -> first job done (s)':36}"
        f"{ad.first_done_seconds:>10.2f}{rd.first_done_seconds:>10.2f}",
        f"{'add wall time (s)':36}{adds.adapter_seconds:>10.2f}{adds.raw_seconds:>10.2f}",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Parse the command line, run the chosen brokers and print one table each."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--broker", choices=[*BROKER_URLS, "all"], default="all")
    parser.add_argument("--jobs", type=int, default=10_000, help="jobs per side (default 10000)")
    parser.add_argument(
        "--store", choices=["redis", "sqlite"], default="redis",
        help="the adapter's job store: Redis db 12 (the results' database), or a SQLite file",
    )  # fmt: skip
    args = parser.parse_args(argv)
    brokers = list(BROKER_URLS) if args.broker == "all" else [args.broker]
    print(
        "add: strategy.add(Job(queue_name, data)) vs app.send_task(name, args=[same-size "
        "payload], task_id, queue), same app, alternating blocks, warm connections.\n"
        "drain: celery worker -P prefork -c 2, acks late, prefetch 1, no heartbeat/mingle/"
        "gossip; adapter: store rows COMPLETED; raw: no-op task results in Redis db 12.\n"
    )
    for broker in brokers:
        print(format_report(run_broker(broker, args.jobs, args.store)), end="\n\n", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
