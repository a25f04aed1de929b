"""What applying retention costs on a million jobs, on SQLite, PostgreSQL and Redis.

Usage: ``python bench/retention.py [--jobs 1000000] [--store sqlite|postgres|redis|all]``

Each store is bulk-loaded with ``--jobs`` jobs (``bench/store_bench.py``'s: 10 queues, 60 %
COMPLETED, 10 % FAILED, ..., created a millisecond apart). Then three rules are applied and
timed, in this order (``ScheduleStore.apply_retention``):

1. ``*:COMPLETED:1000000000:`` removes nothing: the cost of a rule with nothing to do;
2. ``*:FAILED::<age>`` removes the FAILED jobs of the older half (by ``created_at``);
3. ``*:COMPLETED:1000:`` keeps the newest 1,000 per queue: removes about 590,000 jobs.

Printed per store: load time, then per rule the jobs removed, seconds, and jobs removed per
second. The stores are placed as ``bench/store_bench.py`` places them and removed after.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from adapter.job import JobState
from adapter.retention import RetentionRule
from bench.store_bench import START, fill, make_jobs, open_target

STORES = ("sqlite", "postgres", "redis")


def rules(count: int) -> list[tuple[str, RetentionRule]]:
    """The rules timed, with a label each; the age cuts the jobs' creation span in half."""
    half = timedelta(milliseconds=count / 2)
    return [
        ("nothing to remove", RetentionRule("*", JobState.COMPLETED, keep=1_000_000_000)),
        ("FAILED, older half", RetentionRule("*", JobState.FAILED, max_age=half)),
        ("COMPLETED, keep 1000/queue", RetentionRule("*", JobState.COMPLETED, keep=1000)),
    ]


def run_store(name: str, count: int, seed: int) -> list[str]:
    """Fill a fresh store, time each rule on it, remove it; return the report lines."""
    lines = []
    with tempfile.TemporaryDirectory(prefix="adapter-bench-") as folder:
        target = open_target(name, folder)
        try:
            started = time.perf_counter()
            store = fill(name, target, make_jobs(count, seed))
            lines.append(f"{name}: loaded {count:,} jobs in {time.perf_counter() - started:.1f} s")
            now = START + timedelta(milliseconds=count)
            for label, rule in rules(count):
                started = time.perf_counter()
                removed = store.schedules.apply_retention(rule, now)
                took = time.perf_counter() - started
                rate = f"{removed / took:,.0f} jobs/s" if removed else "-"
                lines.append(f"  {label:28} removed {removed:>9,} in {took:7.2f} s  {rate}")
            left = store.find_many({"take": 0}).total_items
            lines.append(f"  jobs left: {left:,}")
            store.close()
        finally:
            target.remove()
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=1_000_000)
    parser.add_argument("--store", choices=[*STORES, "all"], default="all")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)
    for name in STORES if args.store == "all" else (args.store,):
        for line in run_store(name, args.jobs, args.seed):
            print(line, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
