"""The module the benchmark's celery worker imports: ``celery -A bench.workers worker ...``.

It builds the app from the environment (see ``bench.common``), registers the raw no-op task
(results kept in Redis, as a raw Celery user waiting on results would) and, when
``BENCH_ADAPTER_QUEUE`` is set, binds a strategy and starts that adapter queue with a
module-level no-op process, so the consumer bootstep makes the worker consume its celery queue.
Without it the worker is plain Celery: kombu's transports, none of the adapter's bootsteps.
``BENCH_QUEUE_COUNT`` (``bench/many_queues.py``) starts that many queues instead, ``<queue>-0``
to ``<queue>-<N-1>``, and ``BENCH_READY_FILE`` receives the wall-clock time of ``worker_ready``.
"""

from __future__ import annotations

import cProfile
import os
import sys
import time
from pathlib import Path
from typing import Any

from celery.signals import worker_process_init, worker_process_shutdown, worker_ready

from adapter import CeleryJobQueueStrategy, Job
from bench.common import (
    ENV_ADAPTER_QUEUE,
    ENV_BATCH,
    ENV_BROKER,
    ENV_PROFILING,
    ENV_QUEUE_COUNT,
    ENV_READY_FILE,
    ENV_RESULT,
    ENV_STORE,
    RAW_DEFAULT_TASK_NAME,
    RAW_TASK_NAME,
    make_app,
)

app = make_app(os.environ[ENV_BROKER], os.environ[ENV_STORE], os.environ[ENV_RESULT])


@app.task(name=RAW_TASK_NAME, ignore_result=False, acks_late=True)  # type: ignore[untyped-decorator]
def noop_task(payload: Any = None) -> None:
    """Do nothing: the raw Celery side of the drain benchmark."""
    return None


@app.task(name=RAW_DEFAULT_TASK_NAME, ignore_result=False, acks_late=False)  # type: ignore[untyped-decorator]
def noop_default_task(payload: Any = None) -> None:
    """Do nothing, acknowledged early as Celery does by default: the batch comparison's raw side."""
    return None


def noop_process(job: Job) -> None:
    """Do nothing: the adapter side of the drain benchmark."""
    return None


# Only an adapter worker binds a strategy: a raw worker stays plain Celery, on kombu's own
# transports (binding one gives the app the adapter's transports, bootsteps and signals).
if os.environ.get(ENV_ADAPTER_QUEUE):
    strategy = CeleryJobQueueStrategy(app)
    if os.environ.get(ENV_QUEUE_COUNT):
        for index in range(int(os.environ[ENV_QUEUE_COUNT])):
            strategy.start(f"{os.environ[ENV_ADAPTER_QUEUE]}-{index}", noop_process)
    else:
        batch = int(os.environ[ENV_BATCH]) if os.environ.get(ENV_BATCH) else None
        strategy.start(os.environ[ENV_ADAPTER_QUEUE], noop_process, batch=batch)


@worker_ready.connect  # type: ignore[untyped-decorator]
def _report_ready(**_: Any) -> None:
    """Write the time the worker became ready to ``BENCH_READY_FILE``, if set."""
    if os.environ.get(ENV_READY_FILE):
        Path(os.environ[ENV_READY_FILE]).write_text(repr(time.time()))


@worker_process_init.connect  # type: ignore[untyped-decorator]
def _stop_profiling(**_: Any) -> None:
    """In a pool child of a profiled worker: stop the profiler inherited from the parent.

    With ``BENCH_PROFILING`` naming a folder, the child profiles itself (CPU time) into
    ``<folder>/child-<pid>.prof`` when it exits.
    """
    if not os.environ.get(ENV_PROFILING):
        return
    sys.setprofile(None)
    folder = Path(os.environ[ENV_PROFILING])
    if folder.is_dir():
        profile = cProfile.Profile(time.process_time)
        profile.enable()

        @worker_process_shutdown.connect(weak=False)  # type: ignore[untyped-decorator]
        def _dump(**_: Any) -> None:
            profile.disable()
            profile.dump_stats(folder / f"child-{os.getpid()}.prof")
