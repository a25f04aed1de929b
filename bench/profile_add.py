"""Show where the time of ``strategy.add`` goes: isolated timings, then cProfile.

Usage: ``python bench/profile_add.py [--broker redis|amqp] [--jobs 2000] [--top 20]``

1. Without a profiler, each step of the add path is timed on its own over ``--jobs`` jobs:
   building the Job, the checks and copy ``add`` makes, the wire form, the publish of
   ``adapter.run_job`` (the adapter's ``JobPublisher``, and Celery's ``apply_async`` for
   comparison), the SQLite insert one by one and in the batches ``add`` writes behind its
   publishes; beside them ``strategy.add`` whole and a raw ``send_task``.
2. Under cProfile (times inflated), the cumulative time per job of the same parts, and the
   functions with the most own time, for the adapter and the raw side separately. cProfile
   sees the calling thread only: the batches the write-behind thread writes are not in it
   (the isolated ``insert_many`` row gives their cost).

SQLite store in a temp dir; queues are unique, purged and deleted afterwards.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import shutil
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from celery import Celery

from adapter import CeleryJobQueueStrategy, Job, JobState
from adapter.celery.publish import JobPublisher
from adapter.data import ensure_json
from adapter.job import validate_queue_name
from bench.add_rate import add_adapter_jobs, send_raw_tasks, warm_up, wire_template
from bench.common import (
    BROKER_URLS,
    RunNames,
    job_data,
    make_app,
    new_run_names,
    purge_queues,
)

#: Jobs per ``insert_many`` call in the isolated timing (about what 20 ms of adds gather).
INSERT_BATCH = 50
#: (label, file suffix, function name) of the parts of the add path worth naming.
PARTS = [
    ("strategy.add", "adapter/celery/strategy.py", "add"),
    ("  Job(...) (pydantic + sanitize)", "pydantic/main.py", "__init__"),
    ("  ensure_json(job.data)", "adapter/data.py", "ensure_json"),
    ("  job.model_copy", "pydantic/main.py", "model_copy"),
    ("  job.to_wire", "adapter/job.py", "to_wire"),
    ("  JobPublisher.publish", "adapter/celery/publish.py", "publish"),
    ("    of which kombu's Producer.publish", "kombu/messaging.py", "publish"),
    ("  WriteBehind.add (this thread's share)", "adapter/celery/write_behind.py", "add"),
    ("raw app.send_task", "celery/app/base.py", "send_task"),
    ("    of which saferepr (argsrepr)", "celery/utils/saferepr.py", "saferepr"),
]


def _timed(count: int, step: Callable[[int], object]) -> float:
    """Return microseconds per call of ``step(index)`` over ``count`` calls."""
    started = time.perf_counter()
    for index in range(count):
        step(index)
    return (time.perf_counter() - started) * 1e6 / count


def isolated_timings(
    strategy: CeleryJobQueueStrategy, app: Celery, names: RunNames, jobs: int
) -> list[tuple[str, float]]:
    """Time each step of the add path on its own; return (label, us per job) rows."""
    queue_name = names.warm_queue_name
    task = app.tasks["adapter.run_job"]
    made = [Job(queue_name=queue_name, data=job_data(i)) for i in range(jobs)]
    ready = [job.model_copy(update={"id": str(uuid.uuid4())}) for job in made]
    unstored = [job.model_copy(update={"id": str(uuid.uuid4())}) for job in made]
    publisher = JobPublisher(app, task)
    wire = wire_template(queue_name)

    def prepare(index: int) -> object:
        job = made[index]
        validate_queue_name(job.queue_name)
        ensure_json(job.data)
        return job.model_copy(
            update={"id": str(uuid.uuid4()), "state": JobState.PENDING, "attempts": 0}
        )

    def apply_async(index: int) -> object:
        job = ready[index]
        return task.apply_async(
            args=[wire], task_id=job.id, queue=f"jobs.{queue_name}",
            headers={"adapter_queue": queue_name},
        )  # fmt: skip

    def insert_batch(index: int) -> None:
        if index % INSERT_BATCH == 0:
            strategy.store.insert_many(unstored[index : index + INSERT_BATCH])

    rows = [
        ("strategy.add(Job(...)) whole",
         _timed(jobs, lambda i: strategy.add(Job(queue_name=queue_name, data=job_data(i))))),
        ("  Job(queue_name, data=job_data(i))",
         _timed(jobs, lambda i: Job(queue_name=queue_name, data=job_data(i)))),
        ("  validate + ensure_json + model_copy", _timed(jobs, prepare)),
        ("  job.to_wire()", _timed(jobs, lambda i: ready[i].to_wire())),
        ("  JobPublisher.publish(job)", _timed(jobs, lambda i: publisher.publish(ready[i]))),
        ("  (Celery's run_job.apply_async(...))", _timed(jobs, apply_async)),
        ("  (store.insert(job), one by one)",
         _timed(jobs, lambda i: strategy.store.insert(ready[i]))),
        (f"  store.insert_many, {INSERT_BATCH} a batch", _timed(jobs, insert_batch)),
        ("raw app.send_task(...) incl. payload", _timed(jobs, lambda i: send_raw_tasks(
            app, names.raw_warm_queue, wire, i, 1, []))),
    ]  # fmt: skip
    purge_queues(app, [f"jobs.{queue_name}", names.raw_warm_queue])
    return rows


def _cumulative(stats: pstats.Stats, suffix: str, name: str) -> float:
    """Return the cumulative seconds of the functions matching ``suffix`` and ``name``."""
    total = 0.0
    for (filename, _line, function), row in stats.stats.items():  # type: ignore[attr-defined]
        if function == name and filename.endswith(suffix):
            total += row[3]
    return total


def profiled(
    strategy: CeleryJobQueueStrategy, app: Celery, names: RunNames, jobs: int
) -> tuple[pstats.Stats, pstats.Stats]:
    """Profile ``jobs`` adapter adds and ``jobs`` raw sends, each on its own profiler."""
    wire = wire_template(names.queue_name)
    adapter_profile, raw_profile = cProfile.Profile(), cProfile.Profile()
    adapter_profile.runcall(add_adapter_jobs, strategy, names.queue_name, 0, jobs, [])
    raw_profile.runcall(send_raw_tasks, app, names.raw_queue, wire, 0, jobs, [])
    return pstats.Stats(adapter_profile), pstats.Stats(raw_profile)


def main(argv: list[str] | None = None) -> int:
    """Run both measurements and print them."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--broker", choices=list(BROKER_URLS), default="redis")
    parser.add_argument("--jobs", type=int, default=2000)
    parser.add_argument("--top", type=int, default=20)
    args = parser.parse_args(argv)
    names = new_run_names()
    tmp = Path(tempfile.mkdtemp(prefix="adapter-bench-profile-"))
    store_url = f"sqlite:///{tmp / 'jobs.sqlite3'}"
    app = make_app(BROKER_URLS[args.broker], store_url)
    strategy = CeleryJobQueueStrategy(app, store=store_url)
    try:
        purge_queues(app, names.all_celery_queues())
        warm_up(strategy, app, names)
        rows = isolated_timings(strategy, app, names, args.jobs)
        adapter_stats, raw_stats = profiled(strategy, app, names, args.jobs)
    finally:
        purge_queues(app, names.all_celery_queues(), delete=True)
        strategy.destroy()
        app.close()
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"broker {args.broker}, {args.jobs} jobs per measurement\n")
    print(f"{'isolated step, no profiler':46}{'us/job':>9}")
    for label, micros in rows:
        print(f"{label:46}{micros:>9.0f}")
    print(f"\n{'cProfile cumulative (inflated)':46}{'us/job':>9}")
    for number, (label, suffix, name) in enumerate(PARTS):
        stats = raw_stats if number >= PARTS.index(PARTS[-2]) else adapter_stats
        print(f"{label:46}{_cumulative(stats, suffix, name) * 1e6 / args.jobs:>9.0f}")
    for title, stats in (("adapter", adapter_stats), ("raw", raw_stats)):
        out = io.StringIO()
        stats.stream = out  # type: ignore[attr-defined]
        stats.sort_stats("tottime").print_stats(args.top)
        print(f"\n--- {title}: top {args.top} by own time ---\n{out.getvalue().strip()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
