"""Drain: start a prefork celery worker on messages already queued and time it until all are done.

The clock starts just before the worker subprocess is spawned and stops when the poll sees the
last job done: imports, broker connection and pool start-up are all inside it. The time until
the first job is done is reported beside it as the worker's start-up time. Both sides are
polled at the same interval with one cheap query each: a COUNT on the adapter's SQLite store,
an EXISTS on the raw tasks' result keys.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

import redis

from adapter.store import JobStore
from bench.common import result_keys

#: Root of the repository: the worker runs there so ``bench.workers`` and ``celeryconfig`` import.
REPO_ROOT = Path(__file__).resolve().parent.parent
#: Seconds between two polls of the store or the result keys.
POLL_INTERVAL_S = 0.02
#: Seconds a warm shutdown may take before the worker's process group is killed.
STOP_TIMEOUT_S = 20.0
#: Result keys checked for the first finished task (two pool children start two tasks).
FIRST_KEYS = 4
#: The ``celery`` console script of this interpreter, as an operator runs it.
CELERY_SCRIPT = str(Path(sys.executable).with_name("celery"))

#: A probe returns (at least one job done, all jobs done).
Probe = Callable[[], tuple[bool, bool]]


class WorkerFailed(RuntimeError):
    """Raised when the worker exits or times out before every job is done."""


@dataclass(frozen=True)
class DrainResult:
    """Seconds from worker spawn until all jobs were done, and until the first one was.

    ``main_cpu_s``: CPU seconds (user + system, ``/proc/<pid>/stat``) the worker's main
    process spent between the first job done and the last: its start-up is left out.
    ``pool_cpu_s``: the same for its pool children (those alive at both readings).
    """

    jobs: int
    seconds: float
    first_done_seconds: float
    main_cpu_s: float = 0.0
    pool_cpu_s: float = 0.0

    @property
    def rate(self) -> float:
        """Jobs per second over the whole drain, start-up included."""
        return self.jobs / self.seconds

    @property
    def rate_after_first(self) -> float:
        """Jobs per second after the first job was done (start-up excluded)."""
        return (self.jobs - 1) / max(self.seconds - self.first_done_seconds, 1e-9)

    @property
    def main_cpu_us_per_job(self) -> float:
        """Microseconds of the main process's CPU per job, after the first job."""
        return self.main_cpu_s * 1e6 / max(self.jobs - 1, 1)

    @property
    def pool_cpu_us_per_job(self) -> float:
        """Microseconds of the pool children's CPU per job, after the first job."""
        return self.pool_cpu_s * 1e6 / max(self.jobs - 1, 1)


def children_cpu_s(pid: int) -> dict[int, float]:
    """Return the CPU seconds of each child of ``pid`` (its pool processes), from /proc."""
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return {}
    return {int(child): process_cpu_s(int(child)) for child in children}


def process_cpu_s(pid: int) -> float:
    """Return the CPU seconds (utime + stime) process ``pid`` has used, from /proc."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0
    fields = text[text.rindex(")") + 2 :].split()  # after "pid (comm) ": state is field 3
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def worker_command(queue: str, hostname: str, prefetch_multiplier: int = 1) -> list[str]:
    """Return the celery worker command line the brief prescribes, consuming ``queue``.

    ``prefetch_multiplier`` 4 is Celery's default (the project's settings say 1).
    """
    return [
        CELERY_SCRIPT, "-A", "bench.workers", "worker",
        "-P", "prefork", "-c", "2", "-Q", queue, "-n", hostname,
        "--prefetch-multiplier", str(prefetch_multiplier),
        "--without-heartbeat", "--without-mingle", "--without-gossip", "-l", "WARNING",
    ]  # fmt: skip


@contextmanager
def running_worker(command: list[str], env: dict[str, str]) -> Iterator[subprocess.Popen[bytes]]:
    """Run ``command`` in its own process group; always stop it (and its pool) on exit."""
    full_env = {**os.environ, **env, "PYTHONPATH": str(REPO_ROOT)}
    with tempfile.TemporaryFile() as log:
        process = subprocess.Popen(
            command, cwd=REPO_ROOT, env=full_env, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
        try:
            yield process
        except BaseException:
            log.seek(0)
            tail = log.read()[-3000:].decode(errors="replace")
            sys.stderr.write(f"--- worker log (tail) ---\n{tail}\n")
            raise
        finally:
            _stop(process)


def _stop(process: subprocess.Popen[bytes]) -> None:
    """Warm-stop the worker, then kill what is left of its process group."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    # Pool children that outlived their parent are still in the group the worker led.
    with suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)


def drain(
    command: list[str], env: dict[str, str], probe: Probe, jobs: int, timeout: float
) -> DrainResult:
    """Start the worker and poll ``probe`` until all ``jobs`` are done."""
    started = time.perf_counter()
    first: float | None = None
    first_cpu, first_pool = 0.0, dict[int, float]()
    with running_worker(command, env) as process:
        while True:
            any_done, all_done = probe()
            now = time.perf_counter() - started
            if any_done and first is None:
                first, first_cpu = now, process_cpu_s(process.pid)
                first_pool = children_cpu_s(process.pid)
            if all_done:
                main_cpu = process_cpu_s(process.pid) - first_cpu
                pool = children_cpu_s(process.pid)
                pool_cpu = sum(
                    cpu - first_pool[pid] for pid, cpu in pool.items() if pid in first_pool
                )
                first_s = first if first is not None else now
                return DrainResult(jobs, now, first_s, main_cpu, pool_cpu)
            if process.poll() is not None:
                raise WorkerFailed(f"worker exited with code {process.returncode}")
            if now > timeout:
                raise WorkerFailed(f"not all {jobs} jobs were done after {timeout:.0f}s")
            time.sleep(POLL_INTERVAL_S)


def store_probe(store: JobStore, queue_name: str, jobs: int) -> Probe:
    """Return a probe that counts the queue's COMPLETED jobs in the job store."""

    completed_here = {"filter": {"queueName": {"eq": queue_name}, "state": {"eq": "COMPLETED"}}}

    def probe() -> tuple[bool, bool]:
        completed = store.find_many({**completed_here, "take": 0}).total_items
        return completed > 0, completed >= jobs

    return probe


def result_probe(client: redis.Redis, task_ids: list[str]) -> Probe:
    """Return a probe that checks the raw tasks' result keys with EXISTS.

    Results arrive nearly in queue order, so each poll checks the first few keys and the last
    one; only when the last is there are all keys counted (one EXISTS over all of them).
    """
    keys = result_keys(task_ids)
    first_keys, last_key = keys[:FIRST_KEYS], keys[-1]

    def probe() -> tuple[bool, bool]:
        any_done = bool(client.exists(*first_keys))
        all_done = bool(client.exists(last_key)) and client.exists(*keys) == len(keys)
        return any_done, all_done

    return probe
