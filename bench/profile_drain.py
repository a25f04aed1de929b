"""Profile the celery worker's main process (Celery's bottleneck) while it drains jobs.

Usage: ``python bench/profile_drain.py [--broker redis|amqp] [--store sqlite|redis] [--jobs 3000]
[--top 25]``

Queues ``--jobs`` adapter jobs (a SQLite store in a temp dir, or the Redis store in the
results' database, as ``bench/run.py --store redis`` uses) and as many raw no-op tasks, then
drains each side with the benchmark's prefork worker (``bench.drain.worker_command``) run under
a CPU-time cProfile: the profile is the main process's (the consumer, the pool's result
handling); the pool children turn the profiler they inherit off (``bench.workers``). Prints
the main process's CPU per job from /proc beside each side's functions with the most own time.
Times under cProfile are inflated: compare the two sides, not absolute figures.
"""

from __future__ import annotations

import argparse
import pstats
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import redis

from adapter import CeleryJobQueueStrategy, Job
from bench.add_rate import send_raw_tasks, wire_template
from bench.common import (
    BROKER_URLS,
    ENV_ADAPTER_QUEUE,
    ENV_BROKER,
    ENV_PROFILING,
    ENV_RESULT,
    ENV_STORE,
    RESULT_URL,
    delete_result_keys,
    job_data,
    make_app,
    new_run_names,
    purge_queues,
)
from bench.drain import drain, result_probe, store_probe, worker_command

#: Runs ``celery`` (argv[2:]) under a CPU-time cProfile; writes the stats to argv[1] at exit.
_PROFILED_CELERY = """
import cProfile, runpy, sys, time
out = sys.argv[1]
sys.argv = ["celery", *sys.argv[2:]]
profile = cProfile.Profile(time.process_time)
profile.enable()
try:
    runpy.run_module("celery", run_name="__main__")
finally:
    profile.disable()
    profile.dump_stats(out)
"""


def main(argv: list[str] | None = None) -> int:
    """Queue, drain under cProfile, print."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--broker", choices=list(BROKER_URLS), default="redis")
    parser.add_argument("--store", choices=["sqlite", "redis"], default="sqlite")
    parser.add_argument("--jobs", type=int, default=3000)
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--keep", type=Path, help="also copy the .prof files into this folder")
    parser.add_argument(
        "--children", action="store_true", help="profile the pool children too (at their exit)"
    )
    parser.add_argument("--side", choices=["adapter", "raw", "both"], default="both")
    args = parser.parse_args(argv)
    names = new_run_names()
    tmp = Path(tempfile.mkdtemp(prefix="adapter-bench-profile-"))
    url = BROKER_URLS[args.broker]
    store_url = f"sqlite:///{tmp / 'jobs.sqlite3'}" if args.store == "sqlite" else RESULT_URL
    app = make_app(url, store_url)
    strategy = CeleryJobQueueStrategy(app, store=store_url)
    results = redis.Redis.from_url(RESULT_URL)
    raw_ids: list[str] = []
    env = {ENV_BROKER: url, ENV_STORE: store_url, ENV_RESULT: RESULT_URL}
    sides = ["adapter", "raw"] if args.side == "both" else [args.side]
    try:
        purge_queues(app, names.all_celery_queues())
        for side in sides:
            out = tmp / f"{side}.prof"
            if side == "adapter":
                jobs = [
                    Job(queue_name=names.queue_name, data=job_data(i)) for i in range(args.jobs)
                ]
                strategy.add_many(jobs)
                strategy.flush()
                queue, probe = (
                    names.adapter_celery_queue,
                    store_probe(strategy.store, names.queue_name, args.jobs),
                )
                side_env = {**env, ENV_ADAPTER_QUEUE: names.queue_name}
            else:
                wire = wire_template(names.queue_name)
                send_raw_tasks(app, names.raw_queue, wire, 0, args.jobs, raw_ids)
                queue, probe = names.raw_queue, result_probe(results, raw_ids)
                side_env = env
            celery = worker_command(queue, f"bench-prof-{side}-{names.tag}@localhost")
            command = [sys.executable, "-c", _PROFILED_CELERY, str(out), *celery[1:]]
            children = tmp / f"{side}-children"
            children.mkdir()
            side_env = {**side_env, ENV_PROFILING: str(children) if args.children else "1"}
            result = drain(command, side_env, probe, args.jobs, max(120.0, args.jobs / 10))
            print(
                f"=== {side}: {result.rate_after_first:,.0f} jobs/s after the first (profiled), "
                f"main process {result.main_cpu_us_per_job:,.0f} us CPU/job ==="
            )
            if args.keep:
                args.keep.mkdir(parents=True, exist_ok=True)
                shutil.copy(out, args.keep / out.name)
            stats = pstats.Stats(str(out))
            child_files = sorted(str(path) for path in children.glob("*.prof"))
            if child_files:
                print(f"--- {side}: pool children ---")
                child_stats = pstats.Stats(*child_files)
                child_stats.sort_stats("tottime").print_stats(args.top)
                child_stats.sort_stats("cumulative").print_stats(args.top)
                if args.keep:
                    child_stats.dump_stats(args.keep / f"{side}-children.prof")
            stats.sort_stats("tottime").print_stats(args.top)
            stats.sort_stats("cumulative").print_stats(args.top)
    finally:
        purge_queues(app, names.all_celery_queues(), delete=True)
        if args.store == "redis":  # this run's jobs only: others may share the database
            strategy.remove_settled_jobs([names.queue_name])
        delete_result_keys(results, raw_ids)
        results.close()
        strategy.destroy()
        app.close()
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
