"""What the queue gate costs per job start, beside the claim it precedes, on each store.

Usage: ``python bench/gate.py [--jobs 1000]``

For each store (SQLite in a temp dir, PostgreSQL in its own schema, Redis under its own
prefix; one that cannot be reached is skipped) it times, over ``--jobs`` stored jobs:
``claim`` alone (the baseline every start pays), then ``GatedLifecycle.claim`` for a queue
without controls (the process's list of controlled queues, read at most every 0.5 s), with a
concurrency limit, and with a concurrency and a rate limit (slots released as attempts end).
It prints microseconds per start and the ratio to the plain claim of the same run.
"""

from __future__ import annotations

import argparse
import sys
import time
import uuid
from functools import partial
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from adapter.backoff import constant_backoff
from adapter.celery.gate import GatedLifecycle
from adapter.job import Job
from adapter.lifecycle import Liveness
from adapter.running import RunningJobs
from adapter.store.base import JobStore
from adapter.store.queues import queue_store_for
from bench.progress import stores

#: (label, controls set on the queue before its jobs start)
CASES = (
    ("no controls", {}),
    ("concurrency 1000", {"concurrency": 1000}),
    ("concurrency 1000, rate 1000000/s", {"concurrency": 1000, "rate_limit": "1000000/s"}),
)


def _stored(store: JobStore, queue: str, count: int) -> list[Job]:
    jobs = [Job(queue_name=queue, data={"n": n}) for n in range(count)]
    for job in jobs:
        job.id = uuid.uuid4().hex
    store.insert_many(jobs)
    return jobs


def _gated(lifecycle: GatedLifecycle, job: Job) -> None:
    claimed = lifecycle.claim(job)
    if claimed is not None:
        lifecycle._release(claimed)  # the end of its attempt


def _per_start(run: object, jobs: list[Job]) -> float:
    start = time.perf_counter()
    for job in jobs:
        run(job)  # type: ignore[operator]
    return (time.perf_counter() - start) / len(jobs) * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=1000)
    count = parser.parse_args().jobs
    for name, store in stores():
        queues = queue_store_for(store)
        running = RunningJobs(store)
        lifecycle = GatedLifecycle(queues, store, Liveness(), constant_backoff(), running)
        plain = f"bench-plain-{uuid.uuid4().hex[:6]}"
        baseline = _per_start(store.claim, _stored(store, plain, count))
        print(f"{name}: claim alone {baseline:7.0f} us per start")
        for label, controls in CASES:
            queue = f"bench-gate-{uuid.uuid4().hex[:6]}"
            if controls:
                queues.set_control(queue, **controls)  # type: ignore[arg-type]
            lifecycle.controlled.forget()

            cost = _per_start(partial(_gated, lifecycle), _stored(store, queue, count))
            print(f"{name}:   gated, {label:34} {cost:7.0f} us  x{cost / baseline:.2f}")


if __name__ == "__main__":
    main()
