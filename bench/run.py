"""Benchmark the adapter beside raw Celery, in the same run, and print the ratios.

Usage: ``python bench/run.py [--broker redis|amqp|all] [--jobs 10000] [--store redis|sqlite]
[--runs 3]``

For each broker: (a) the add rate of ``strategy.add`` (store: by default the Redis store in the
results' database, as the adapter chooses when Celery's result backend is Redis: the
like-for-like of raw Celery keeping its results there; or a SQLite file in a temp dir) against
``app.send_task`` with the same app and payload size; (b) the drain rate of
a ``celery worker -P prefork -c 2`` over the jobs (a) queued, the adapter until its store shows
all COMPLETED, raw Celery until every result is in Redis; beside the rates, the CPU per job
of the worker's main process and of its pool children (``/proc``, after the first job). Both
sides run with the same settings: acks late, prefetch 1, results written to the same Redis
result backend (the adapter's ``adapter_job_results`` default). Each broker is measured
``--runs`` times: the table gives each row's median and the spread (min-max) of its ratio.
Queues are unique per run, purged before and after, then deleted with the result keys and the
temp dir.
"""

from __future__ import annotations

import argparse
import shutil
import socket
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import redis
from celery import Celery

from adapter import CeleryJobQueueStrategy, Job
from bench.add_rate import AddResult, measure_adds, send_raw_tasks, warm_up, wire_template
from bench.common import (
    BROKER_URLS,
    ENV_ADAPTER_QUEUE,
    ENV_BATCH,
    ENV_BROKER,
    ENV_RESULT,
    ENV_STORE,
    RAW_DEFAULT_TASK_NAME,
    RESULT_URL,
    RunNames,
    clean_redis_broker,
    delete_result_keys,
    job_data,
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

#: Ratios adapter/raw the project aims for (issue 12).
ADD_TARGET = 2.0
DRAIN_TARGET = 1.0
#: The batch queue's drain over raw Celery's with its default settings.
BATCH_TARGET = 2.5


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
    #: The adapter's batch queue beside raw Celery with its default settings, if measured.
    batch_drain: DrainResult | None = None
    raw_default_drain: DrainResult | None = None


def run_broker(broker: str, jobs: int, store_kind: str, batch: int = 0) -> BrokerReport:
    """Run the add and drain benchmarks on one broker and clean up after them."""
    url = BROKER_URLS[broker]
    names = new_run_names()
    tmp = Path(tempfile.mkdtemp(prefix="adapter-bench-"))
    store_url = f"sqlite:///{tmp / 'jobs.sqlite3'}" if store_kind == "sqlite" else RESULT_URL
    app = make_app(url, store_url)
    strategy = CeleryJobQueueStrategy(app, store=store_url)
    results = redis.Redis.from_url(RESULT_URL)
    raw_ids: list[str] = []
    hostnames = [
        f"bench-{side}-{names.tag}@{socket.gethostname()}"
        for side in ("adapter", "raw", "batch", "raw-default")
    ]
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
        report = BrokerReport(broker, url, store_url, jobs, adds, adapter_drain, raw_drain)
        if batch > 1:
            batch_drain, raw_default_drain = _batch_drains(
                app, strategy, results, names, env, jobs, batch, hostnames[2:], raw_ids
            )
            report = replace(report, batch_drain=batch_drain, raw_default_drain=raw_default_drain)
        return report
    finally:
        purge_queues(app, names.all_celery_queues(), delete=True)
        delete_result_keys(results, raw_ids)
        if broker == "redis":
            with redis.Redis.from_url(url) as broker_client:
                clean_redis_broker(broker_client, names.all_celery_queues(), hostnames)
        if store_kind == "redis":  # this run's jobs only: other runs may share db 12
            strategy.remove_settled_jobs(
                [names.queue_name, names.batch_queue_name, names.warm_queue_name]
            )
        results.close()
        strategy.destroy()
        app.close()
        shutil.rmtree(tmp, ignore_errors=True)


def _batch_drains(
    app: Celery,
    strategy: CeleryJobQueueStrategy,
    results: redis.Redis,
    names: RunNames,
    env: dict[str, str],
    jobs: int,
    batch: int,
    hostnames: list[str],
    raw_ids: list[str],
) -> tuple[DrainResult, DrainResult]:
    """Drain a batch queue, then raw no-op tasks under Celery's defaults (prefetch 4, acks early).

    The raw task ids are appended to ``raw_ids`` (their result keys are deleted after the run).
    """
    queue_name = names.batch_queue_name
    for start in range(0, jobs, 1000):
        count = min(1000, jobs - start)
        strategy.add_many(
            Job(queue_name=queue_name, data=job_data(start + i)) for i in range(count)
        )
    strategy.flush()
    default_ids: list[str] = []
    wire = wire_template(queue_name)
    send_raw_tasks(app, names.raw_default_queue, wire, 0, jobs, default_ids, RAW_DEFAULT_TASK_NAME)
    raw_ids += default_ids
    timeout = max(120.0, jobs / 20)
    batch_drain = drain(
        worker_command(f"jobs.{queue_name}", hostnames[0], prefetch_multiplier=4),
        {**env, ENV_ADAPTER_QUEUE: queue_name, ENV_BATCH: str(batch)},
        store_probe(strategy.store, queue_name, jobs), jobs, timeout,
    )  # fmt: skip
    raw_default_drain = drain(
        worker_command(names.raw_default_queue, hostnames[1], prefetch_multiplier=4),
        env, result_probe(results, default_ids), jobs, timeout,
    )  # fmt: skip
    return batch_drain, raw_default_drain


#: Seconds a celery queue is given to show every message sent (RabbitMQ counts a queue on
#: another connection than the publisher's: the last messages may still be on their way).
QUEUED_WITHIN_S = 10.0


def _check_queued(app: Celery, names: RunNames, jobs: int) -> None:
    """Fail early unless each side's celery queue holds exactly ``jobs`` messages."""
    for queue in (names.adapter_celery_queue, names.raw_queue):
        deadline = time.monotonic() + QUEUED_WITHIN_S
        while (size := queue_size(app, queue)) < jobs and time.monotonic() < deadline:
            time.sleep(0.05)
        if size != jobs:
            raise RuntimeError(f"celery queue {queue} holds {size} messages, expected {jobs}")


#: (label, the adapter's and raw's figure of a report, target ratio or None, higher is better).
_ROWS: list[tuple[str, Callable[[BrokerReport], tuple[float, float]], float | None]] = [
    (
        "add (jobs/s)",
        lambda r: (r.jobs / r.adds.adapter_seconds, r.jobs / r.adds.raw_seconds),
        ADD_TARGET,
    ),
    (
        "drain (jobs/s, spawn -> all done)",
        lambda r: (r.adapter_drain.rate, r.raw_drain.rate),
        DRAIN_TARGET,
    ),
    (
        "  drain after first job (jobs/s)",
        lambda r: (r.adapter_drain.rate_after_first, r.raw_drain.rate_after_first),
        DRAIN_TARGET,
    ),
    (
        "main process CPU/job (us, lower)",
        lambda r: (r.adapter_drain.main_cpu_us_per_job, r.raw_drain.main_cpu_us_per_job),
        None,
    ),
    (
        "pool children CPU/job (us, lower)",
        lambda r: (r.adapter_drain.pool_cpu_us_per_job, r.raw_drain.pool_cpu_us_per_job),
        None,
    ),
]
#: The same for the batch queue beside raw Celery's defaults (reports that measured it).
_BATCH_ROWS: list[tuple[str, Callable[[BrokerReport], tuple[float, float]], float | None]] = [
    (
        "batch queue drain vs raw default (jobs/s)",
        lambda r: _rates(r.batch_drain, r.raw_default_drain),
        BATCH_TARGET,
    ),
    (
        "  after first job (jobs/s)",
        lambda r: _rates(r.batch_drain, r.raw_default_drain, after_first=True),
        BATCH_TARGET,
    ),
    (
        "  main process CPU/job (us, lower)",
        lambda r: _cpu(r.batch_drain, r.raw_default_drain, main=True),
        None,
    ),
    (
        "  pool children CPU/job (us, lower)",
        lambda r: _cpu(r.batch_drain, r.raw_default_drain, main=False),
        None,
    ),
]


def _rates(
    ours: DrainResult | None, raw: DrainResult | None, *, after_first: bool = False
) -> tuple[float, float]:
    assert ours is not None and raw is not None
    if after_first:
        return ours.rate_after_first, raw.rate_after_first
    return ours.rate, raw.rate


def _cpu(ours: DrainResult | None, raw: DrainResult | None, *, main: bool) -> tuple[float, float]:
    assert ours is not None and raw is not None
    if main:
        return ours.main_cpu_us_per_job, raw.main_cpu_us_per_job
    return ours.pool_cpu_us_per_job, raw.pool_cpu_us_per_job  # fmt: skip


def format_report(report: BrokerReport) -> str:
    """Return the table of one run on one broker."""
    return format_reports([report])


def format_reports(reports: list[BrokerReport]) -> str:
    """Return the table of one broker: per row the median of the runs, the ratio's spread."""
    first = reports[0]
    runs = len(reports)
    lines = [
        f"broker {first.broker}: {first.url} | jobs per side: {first.jobs} | runs: {runs}",
        f"adapter store: {first.store_url}",
        f"{'median of the runs':36}{'adapter':>10}{'raw':>10}{'adapter/raw':>13}"
        f"{'spread':>14}{'target':>9}",
    ]
    rows = _ROWS + (_BATCH_ROWS if all(r.batch_drain is not None for r in reports) else [])
    for label, figures, target in rows:
        pairs = [figures(report) for report in reports]
        ratios = [adapter / max(raw, 1e-9) for adapter, raw in pairs]
        ratio = statistics.median(ratios)
        adapter = statistics.median(a for a, _ in pairs)
        raw = statistics.median(r for _, r in pairs)
        spread = f"{min(ratios):.2f}-{max(ratios):.2f}" if runs > 1 else ""
        verdict = "" if target is None else ("  ok" if ratio >= target else "  BELOW")
        goal = "" if target is None else f">={target:.1f}x"
        lines.append(
            f"{label:36}{adapter:>10,.0f}{raw:>10,.0f}{ratio:>12.2f}x{spread:>14}{goal:>9}{verdict}"
        )
    lines += [
        f"{'drain wall time (s)':36}"
        f"{statistics.median(r.adapter_drain.seconds for r in reports):>10.2f}"
        f"{statistics.median(r.raw_drain.seconds for r in reports):>10.2f}",
        f"{'worker spawn -> first job done (s)':36}"
        f"{statistics.median(r.adapter_drain.first_done_seconds for r in reports):>10.2f}"
        f"{statistics.median(r.raw_drain.first_done_seconds for r in reports):>10.2f}",
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
    parser.add_argument(
        "--batch", type=int, default=50,
        help="also drain a batch queue of this size beside raw Celery's defaults (0: no)",
    )  # fmt: skip
    parser.add_argument("--runs", type=int, default=3, help="runs per broker (default 3)")
    args = parser.parse_args(argv)
    brokers = list(BROKER_URLS) if args.broker == "all" else [args.broker]
    print(
        "add: strategy.add(Job(queue_name, data)) vs app.send_task(name, args=[same-size "
        "payload], task_id, queue), same app, alternating blocks, warm connections.\n"
        "drain: celery worker -P prefork -c 2, acks late, prefetch 1, no heartbeat/mingle/"
        "gossip; adapter: store rows COMPLETED; raw: no-op task results in Redis db 12; both "
        "write Celery results (adapter_job_results on).\n"
        "batch: the adapter's queue started with batch=N vs raw Celery's defaults (prefetch "
        "multiplier 4, acks early, results written), both workers --prefetch-multiplier 4.\n"
    )
    for broker in brokers:
        reports = []
        for number in range(args.runs):
            reports.append(run_broker(broker, args.jobs, args.store, args.batch))
            if args.runs > 1:
                print(f"run {number + 1}:\n{format_report(reports[-1])}", end="\n\n", flush=True)
        print(format_reports(reports), end="\n\n", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
