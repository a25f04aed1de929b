"""Benchmark the job stores' inspection queries on a large store, and print a table per store.

Usage: ``python bench/store_bench.py [--jobs 1000000] [--store redis|sqlite|postgres|all]``

Each store is filled with the same ``--jobs`` jobs (10 queues, mixed states, one creation time
per millisecond), bulk-loaded in the store's own layout: pipelined hashes and batched ``ZADD``
for Redis, ``executemany`` for SQL, then ``ANALYZE`` (SQLite) or ``VACUUM ANALYZE``
(PostgreSQL; its index-only COUNT needs the visibility map) unless ``--no-analyze``. Then
``--runs`` times each: (a) ``find_many`` of one queue in one state, newest first, ``take`` 20;
(b) ``find_one`` of a random id (``JobStore.get``). Targets: p50 <= 20 ms and <= 2 ms.

SQLite lives in a temp dir; PostgreSQL in a schema ``adapter_bench_<hex>``, dropped after;
Redis in database 12 under a prefix ``adapter-bench-<hex>``, whose keys are deleted after
(SCAN and UNLINK; never a flush: the server is shared).
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import redis
import sqlalchemy as sa
from redis.typing import EncodableT

from adapter.job import SETTLED_STATES, Job, JobState
from adapter.store.base import JobStore
from adapter.store.redis.layout import RedisKeys, job_hash, micros
from adapter.store.redis.store import RedisJobStore
from adapter.store.sql.store import SqlJobStore
from adapter.store.sql.tables import jobs

#: Redis database of the benchmarks (as bench/common.py).
REDIS_URL = "redis://127.0.0.1:6379/12"
#: PostgreSQL database the benchmark makes its schema in.
POSTGRES_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
#: Queues the jobs are spread over.
QUEUES = [f"queue-{n}" for n in range(10)]
#: Share of the jobs in each state.
STATE_WEIGHTS = {
    JobState.COMPLETED: 60,
    JobState.FAILED: 10,
    JobState.CANCELLED: 5,
    JobState.PENDING: 15,
    JobState.RUNNING: 5,
    JobState.RETRYING: 5,
}
#: Jobs per bulk-load batch.
LOAD_BATCH = 10_000
#: Targets of the issue, p50 in milliseconds.
FIND_MANY_TARGET_MS = 20.0
FIND_ONE_TARGET_MS = 2.0
#: Creation time of the first job.
START = datetime(2024, 1, 1, tzinfo=UTC)


def make_jobs(count: int, seed: int) -> Iterator[Job]:
    """Yield ``count`` jobs, the same ones for the same seed, created a millisecond apart."""
    rng = random.Random(seed)
    states, weights = list(STATE_WEIGHTS), list(STATE_WEIGHTS.values())
    for n in range(count):
        state = rng.choices(states, weights)[0]
        created = START + timedelta(milliseconds=n)
        started = None if state is JobState.PENDING else created + timedelta(seconds=1)
        yield Job.model_construct(
            id=f"{rng.getrandbits(128):032x}",
            queue_name=rng.choice(QUEUES),
            data={"n": n},
            state=state,
            progress=100 if state is JobState.COMPLETED else 0,
            result=None,
            error="boom" if state is JobState.FAILED else None,
            retries=1,
            attempts=0 if started is None else 1,
            created_at=created,
            started_at=started,
            settled_at=created + timedelta(seconds=2) if state in SETTLED_STATES else None,
        )


def batches(items: Iterator[Job], size: int) -> Iterator[list[Job]]:
    """Yield lists of up to ``size`` items."""
    batch: list[Job] = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def load_redis(client: redis.Redis, keys: RedisKeys, source: Iterator[Job]) -> None:
    """Write jobs in the Redis store's layout: one hash each, index entries batched per ZADD."""
    now = datetime.now(UTC)
    for batch in batches(source, LOAD_BATCH):
        indexes: dict[str, dict[str, int]] = {}
        with client.pipeline(transaction=False) as pipe:
            for job in batch:
                job_id, queue, state = str(job.id), job.queue_name, job.state.value
                fields: dict[EncodableT, EncodableT] = {
                    name: value for name, value in job_hash(job, now).items()
                }
                pipe.hset(keys.job(job_id), mapping=fields)
                created = micros(job.created_at)
                for key in (keys.all, keys.queue(queue), keys.state(state)):
                    indexes.setdefault(key, {})[job_id] = created
                indexes.setdefault(keys.state_queue(state, queue), {})[job_id] = created
                if job.is_settled and job.settled_at is not None:
                    settled = micros(job.settled_at)
                    indexes.setdefault(keys.settled, {})[job_id] = settled
                    indexes.setdefault(keys.settled_queue(queue), {})[job_id] = settled
            for key, scores in indexes.items():
                pipe.zadd(key, scores)
            pipe.sadd(keys.queues, *QUEUES)
            pipe.execute()


def sql_row(job: Job, now: datetime) -> dict[str, Any]:
    """Return the row of ``job`` in the SQL store's table (times naive UTC)."""

    def naive(value: datetime | None) -> datetime | None:
        return None if value is None else value.astimezone(UTC).replace(tzinfo=None)

    return {
        "id": job.id,
        "queue_name": job.queue_name,
        "data": f'{{"n": {job.data["n"]}}}',
        "state": job.state.value,
        "progress": job.progress,
        "result": "null",
        "error": job.error,
        "retries": job.retries,
        "attempts": job.attempts,
        "created_at": naive(job.created_at),
        "started_at": naive(job.started_at),
        "settled_at": naive(job.settled_at),
        "updated_at": naive(now),
        "is_settled": job.is_settled,
    }


def load_sql(url: str, source: Iterator[Job], analyze: bool) -> None:
    """Insert jobs into the SQL store's table with ``executemany``, then maybe ANALYZE it."""
    engine = sa.create_engine(url)
    now = datetime.now(UTC)
    try:
        for batch in batches(source, LOAD_BATCH):
            with engine.begin() as conn:
                conn.execute(jobs.insert(), [sql_row(job, now) for job in batch])
        if analyze:
            command = "ANALYZE" if url.startswith("sqlite") else "VACUUM ANALYZE"
            with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                conn.execute(sa.text(f"{command} adapter_job"))
    finally:
        engine.dispose()


@dataclass(frozen=True)
class Report:
    """What one store measured, in seconds and milliseconds."""

    store: str
    jobs: int
    load_s: float
    find_many_ms: tuple[float, float]
    find_one_ms: tuple[float, float]


def percentiles(samples: list[float]) -> tuple[float, float]:
    """Return p50 and p95 of ``samples`` (seconds) in milliseconds."""
    cuts = statistics.quantiles(samples, n=100, method="inclusive")
    return cuts[49] * 1000, cuts[94] * 1000


def measure(
    store: JobStore, ids: list[str], runs: int, seed: int
) -> tuple[tuple[float, float], ...]:
    """Time ``runs`` find_many and find_one calls (after a warm-up); return their percentiles."""
    rng = random.Random(seed)
    states = [state.value for state in STATE_WEIGHTS]

    def find_many() -> None:
        options = {
            "filter": {
                "queueName": {"eq": rng.choice(QUEUES)},
                "state": {"eq": rng.choice(states)},
            },
            "sort": {"createdAt": "DESC"},
            "take": 20,
        }
        assert len(store.find_many(options).items) == 20

    def find_one() -> None:
        assert store.get(rng.choice(ids)) is not None

    results = []
    for call in (find_many, find_one):
        for _ in range(10):
            call()
        results.append(percentiles(timed(call, runs)))
    return tuple(results)


def timed(call: Callable[[], None], runs: int) -> list[float]:
    """Return the duration of each of ``runs`` calls, in seconds."""
    samples = []
    for _ in range(runs):
        started = time.perf_counter()
        call()
        samples.append(time.perf_counter() - started)
    return samples


def sampled(source: Iterator[Job], every: int, into: list[str]) -> Iterator[Job]:
    """Yield the jobs of ``source``, appending every ``every``-th id to ``into``."""
    for n, job in enumerate(source):
        if n % every == 0:
            into.append(str(job.id))
        yield job


@dataclass(frozen=True)
class Target:
    """Where one store lives for the run, and how to remove it afterwards."""

    url: str
    remove: Callable[[], None]
    #: Key prefix (Redis only).
    prefix: str = ""


def run_store(name: str, count: int, runs: int, seed: int, analyze: bool = True) -> Report:
    """Fill a fresh store of kind ``name``, measure it, and remove it."""
    with tempfile.TemporaryDirectory(prefix="adapter-bench-") as folder:
        target = open_target(name, folder)
        try:
            ids: list[str] = []
            source = sampled(make_jobs(count, seed), max(count // 1000, 1), ids)
            started = time.perf_counter()
            store = fill(name, target, source, analyze)
            load_s = time.perf_counter() - started
            many, one = measure(store, ids, runs, seed)
            store.close()
        finally:
            target.remove()
    return Report(name, count, load_s, many, one)


def fill(name: str, target: Target, source: Iterator[Job], analyze: bool = True) -> JobStore:
    """Open the store of kind ``name`` at ``target`` and bulk-load ``source`` into it."""
    store: JobStore
    if name == "redis":
        store = RedisJobStore(target.url, prefix=target.prefix)
        store.get("creates-the-schema-key")
        client = redis.Redis.from_url(target.url)
        load_redis(client, RedisKeys(target.prefix), source)
        client.close()
    else:
        store = SqlJobStore(target.url)
        store.get("creates-the-table")
        load_sql(target.url, source, analyze)
    return store


def open_target(name: str, folder: str) -> Target:
    """Return a fresh, empty place for a store of kind ``name``."""
    tag = uuid.uuid4().hex[:12]
    if name == "sqlite":
        return Target(f"sqlite:///{folder}/jobs.sqlite3", lambda: None)
    if name == "redis":
        prefix = f"adapter-bench-{tag}"

        def delete_keys() -> None:
            client = redis.Redis.from_url(REDIS_URL)
            batch: list[bytes] = []
            for key in client.scan_iter(match=f"{prefix}:*", count=10_000):
                batch.append(key)
                if len(batch) == 10_000:
                    client.unlink(*batch)
                    batch = []
            if batch:
                client.unlink(*batch)
            client.close()

        return Target(REDIS_URL, delete_keys, prefix)
    schema = f"adapter_bench_{tag}"
    admin = sa.create_engine(POSTGRES_URL)
    with admin.begin() as conn:
        conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    url = sa.make_url(POSTGRES_URL).update_query_dict({"options": f"-csearch_path={schema}"})

    def drop_schema() -> None:
        with admin.begin() as conn:
            conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()

    return Target(url.render_as_string(hide_password=False), drop_schema)


def format_report(report: Report) -> str:
    """Return one store's table."""
    rows = [
        (
            "find_many queue+state, take 20, createdAt DESC",
            report.find_many_ms,
            FIND_MANY_TARGET_MS,
        ),
        ("find_one by id", report.find_one_ms, FIND_ONE_TARGET_MS),
    ]
    lines = [
        f"{report.store}: {report.jobs:,} jobs, loaded in {report.load_s:.1f} s",
        f"  {'query':<48} {'p50 ms':>8} {'p95 ms':>8} {'target p50':>11}",
    ]
    for label, (p50, p95), target in rows:
        verdict = "ok" if p50 <= target else "MISSED"
        lines.append(f"  {label:<48} {p50:8.2f} {p95:8.2f} {f'<= {target:g}':>8} {verdict}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Parse the command line, run the chosen stores and print one table each."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--store", choices=["redis", "sqlite", "postgres", "all"], default="all")
    parser.add_argument("--jobs", type=int, default=1_000_000, help="jobs per store")
    parser.add_argument("--runs", type=int, default=200, help="timed calls per query")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--no-analyze", action="store_true", help="skip (VACUUM) ANALYZE")
    args = parser.parse_args(argv)
    names = ["redis", "sqlite", "postgres"] if args.store == "all" else [args.store]
    for name in names:
        print(
            format_report(run_store(name, args.jobs, args.runs, args.seed, not args.no_analyze)),
            end="\n\n",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
