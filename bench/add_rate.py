"""Add rate: ``strategy.add(Job(...))`` beside raw ``app.send_task(...)`` on one app.

Both sides run in alternating blocks (adapter, raw, raw, adapter, ...) so that drift on a
shared machine (a growing queue, a growing SQLite file, other load) falls on both evenly.
Each timed call includes what a caller does per job: build the payload and the job or task id.
The raw payload is the job's own wire form, so both messages carry the same bytes of arguments.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field

from celery import Celery

from adapter import CeleryJobQueueStrategy, Job
from bench.common import RAW_TASK_NAME, RunNames, job_data, purge_queues

#: Jobs each side publishes to warm-up queues (connections, declarations, store) before timing.
WARM_UP_JOBS = 50


@dataclass
class AddResult:
    """Timed add calls of both sides and the ids they published."""

    adapter_seconds: float = 0.0
    raw_seconds: float = 0.0
    adapter_ids: list[str] = field(default_factory=list)
    raw_ids: list[str] = field(default_factory=list)


def add_adapter_jobs(
    strategy: CeleryJobQueueStrategy, queue_name: str, first: int, count: int, ids: list[str]
) -> float:
    """Add ``count`` jobs through the adapter; return the seconds it took.

    The block ends with ``flush()``: every job is in the store, so the batches written behind
    the adds are timed on the adapter's side, never during the next raw block.
    """
    started = time.perf_counter()
    for index in range(first, first + count):
        ids.append(strategy.add(Job(queue_name=queue_name, data=job_data(index))).id or "")
    strategy.flush()
    return time.perf_counter() - started


def send_raw_tasks(
    app: Celery,
    queue: str,
    wire: dict[str, object],
    first: int,
    count: int,
    ids: list[str],
    task_name: str = RAW_TASK_NAME,
) -> float:
    """Send ``count`` raw tasks with the adapter's payload shape; return the seconds it took."""
    started = time.perf_counter()
    for index in range(first, first + count):
        task_id = str(uuid.uuid4())
        payload = {**wire, "id": task_id, "data": job_data(index)}
        app.send_task(task_name, args=[payload], task_id=task_id, queue=queue)
        ids.append(task_id)
    return time.perf_counter() - started


def wire_template(queue_name: str) -> dict[str, object]:
    """Return the wire form of a pending job, the raw side's payload template."""
    job = Job(id=str(uuid.uuid4()), queue_name=queue_name, data=job_data(0))
    return job.to_wire()


def warm_up(strategy: CeleryJobQueueStrategy, app: Celery, names: RunNames) -> None:
    """Open producer connections and the store on both sides, then drop the warm-up messages."""
    wire = wire_template(names.warm_queue_name)
    add_adapter_jobs(strategy, names.warm_queue_name, 0, WARM_UP_JOBS, [])
    send_raw_tasks(app, names.raw_warm_queue, wire, 0, WARM_UP_JOBS, [])
    purge_queues(app, [f"jobs.{names.warm_queue_name}", names.raw_warm_queue], delete=True)


def measure_adds(
    strategy: CeleryJobQueueStrategy, app: Celery, names: RunNames, jobs: int, blocks: int = 10
) -> AddResult:
    """Publish ``jobs`` jobs on each side, in ``blocks`` alternating blocks, and time them."""
    result = AddResult()
    wire = wire_template(names.queue_name)
    block = max(jobs // blocks, 1)
    done = 0
    for number in range(blocks):
        count = block if number < blocks - 1 else jobs - done
        if count <= 0:
            break
        adapter_first = number % 2 == 0
        for side in ("adapter", "raw") if adapter_first else ("raw", "adapter"):
            if side == "adapter":
                result.adapter_seconds += add_adapter_jobs(
                    strategy, names.queue_name, done, count, result.adapter_ids
                )
            else:
                result.raw_seconds += send_raw_tasks(
                    app, names.raw_queue, wire, done, count, result.raw_ids
                )
        done += count
    return result
