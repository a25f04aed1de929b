"""Many queues: how long after ``worker_ready`` the first job runs when a worker starts N queues.

A real ``celery -A bench.workers worker`` starts ``--queues`` adapter queues (10,000 by
default); as soon as it reports ``worker_ready`` (the time is written to a file), one job is
added to the LAST queue, and the clock stops when the store shows it settled. The figure is
seconds from ready to settled: it includes the time the worker's consumer takes to consume
every started queue. The job store is a SQLite file in a temporary folder; every queue and
exchange the run declared (on Redis: every key naming the run's queues, bindings included) is
deleted afterwards, as the brokers are shared.

Each broker is measured twice: on new queues (the worker creates them), then with a second
worker on the same queues (they exist, as after a restart).

    python bench/many_queues.py --broker all --queues 10000
"""

from __future__ import annotations

import argparse
import contextlib
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import redis
from celery import Celery

from adapter import CeleryJobQueueStrategy, Job
from adapter.celery.routing import celery_queue
from bench.common import (
    BROKER_URLS,
    ENV_ADAPTER_QUEUE,
    ENV_BROKER,
    ENV_QUEUE_COUNT,
    ENV_READY_FILE,
    ENV_RESULT,
    ENV_STORE,
    RESULT_URL,
    clean_redis_broker,
    make_app,
)
from bench.drain import CELERY_SCRIPT, running_worker

T = TypeVar("T")

#: Longest wait for the worker to be ready, and then for the job to settle, in seconds.
TIMEOUT_S = 600.0
#: Seconds between two polls of the ready file or the store.
POLL_INTERVAL_S = 0.02


def measure(broker: str, count: int) -> tuple[float, float]:
    """Return seconds from ``worker_ready`` to the last queue's job settling, twice.

    First on queues the broker does not know yet (the worker creates them), then with a new
    worker on the same queues, as after a worker restart.
    """
    tag = uuid.uuid4().hex[:8]
    prefix = f"bench-many-{tag}"
    with tempfile.TemporaryDirectory() as folder:
        store_url = f"sqlite:///{Path(folder) / 'jobs.sqlite3'}"
        app = make_app(BROKER_URLS[broker], store_url)
        strategy = CeleryJobQueueStrategy(app, embedded_worker=False)
        env = {
            ENV_BROKER: BROKER_URLS[broker],
            ENV_STORE: store_url,
            ENV_RESULT: RESULT_URL,
            ENV_ADAPTER_QUEUE: prefix,
            ENV_QUEUE_COUNT: str(count),
        }
        hostnames = [f"{prefix}-{run}@%h" for run in range(2)]
        try:
            first, again = (
                _run_once(strategy, env, Path(folder) / f"ready{run}", hostname, count)
                for run, hostname in enumerate(hostnames)
            )
            return first, again
        finally:
            names = [celery_queue(f"{prefix}-{index}") for index in range(count)]
            if broker == "redis":
                _delete_redis_keys(redis.Redis.from_url(BROKER_URLS[broker]), prefix)
                clean_redis_broker(redis.Redis.from_url(BROKER_URLS[broker]), names, hostnames)
            else:
                _delete_queues(app, names)
            strategy.destroy()


def _run_once(
    strategy: CeleryJobQueueStrategy, env: dict[str, str], ready: Path, hostname: str, count: int
) -> float:
    """Start a worker, add a job to the last queue once it is ready, time it until settled."""
    command = [
        CELERY_SCRIPT, "-A", "bench.workers", "worker", "-P", "prefork", "-c", "1",
        "-n", hostname, "--without-heartbeat", "--without-mingle", "--without-gossip",
        "-l", "WARNING",
    ]  # fmt: skip
    with running_worker(command, {**env, ENV_READY_FILE: str(ready)}) as process:
        ready_at = float(_wait(lambda: _read(ready), process, "worker_ready"))
        queue_name = f"{env[ENV_ADAPTER_QUEUE]}-{count - 1}"
        job = strategy.add(Job(queue_name=queue_name, data={}))
        _wait(lambda: _settled(strategy, job.id or ""), process, "the job to settle")
        return time.time() - ready_at


def _read(path: Path) -> str | None:
    return path.read_text() if path.exists() and path.read_text() else None


def _settled(strategy: CeleryJobQueueStrategy, job_id: str) -> bool | None:
    found = strategy.find_one(job_id)
    return (found is not None and found.is_settled) or None


def _wait(probe: Callable[[], T | None], process: subprocess.Popen[bytes], what: str) -> T:
    """Poll ``probe`` until it returns something truthy; fail if the worker exits or times out."""
    deadline = time.monotonic() + TIMEOUT_S
    while time.monotonic() < deadline:
        found = probe()
        if found:
            return found
        if process.poll() is not None:
            raise RuntimeError(f"the worker exited while waiting for {what}")
        time.sleep(POLL_INTERVAL_S)
    raise RuntimeError(f"timed out after {TIMEOUT_S:.0f}s waiting for {what}")


def _delete_queues(app: Celery, names: list[str]) -> None:
    """Delete each celery queue and its exchange (already gone is fine)."""
    with app.connection_for_write() as connection:
        channel = connection.default_channel
        for name in names:
            with contextlib.suppress(Exception):
                channel.queue_delete(name)
            with contextlib.suppress(Exception):
                channel.exchange_delete(name)


def _delete_redis_keys(client: redis.Redis, prefix: str) -> None:
    """Delete the run's queue lists and bindings: every key holding ``prefix`` (unique)."""
    keys = list(client.scan_iter(match=f"*{prefix}*", count=1000))
    for start in range(0, len(keys), 1000):
        client.delete(*keys[start : start + 1000])


def main() -> None:
    """Parse the arguments and print one line per broker."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--broker", choices=["redis", "amqp", "all"], default="all")
    parser.add_argument("--queues", type=int, default=10_000, help="started queues")
    args = parser.parse_args()
    for broker in ["redis", "amqp"] if args.broker == "all" else [args.broker]:
        first, again = measure(broker, args.queues)
        print(
            f"{broker}: {args.queues} started queues: the job settled {first:.2f}s after ready "
            f"(new queues), {again:.2f}s (existing queues, a restarted worker)"
        )


if __name__ == "__main__":
    main()
