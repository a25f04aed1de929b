"""The module the benchmark's celery worker imports: ``celery -A bench.workers worker ...``.

It builds the app from the environment (see ``bench.common``), registers the raw no-op task
(results kept in Redis, as a raw Celery user waiting on results would) and, when
``BENCH_ADAPTER_QUEUE`` is set, starts that adapter queue with a module-level no-op process,
so the consumer bootstep makes the worker consume its celery queue.
"""

from __future__ import annotations

import os
from typing import Any

from adapter import CeleryJobQueueStrategy, Job
from bench.common import (
    ENV_ADAPTER_QUEUE,
    ENV_BROKER,
    ENV_RESULT,
    ENV_STORE,
    RAW_TASK_NAME,
    make_app,
)

app = make_app(os.environ[ENV_BROKER], os.environ[ENV_STORE], os.environ[ENV_RESULT])


@app.task(name=RAW_TASK_NAME, ignore_result=False, acks_late=True)  # type: ignore[untyped-decorator]
def noop_task(payload: Any = None) -> None:
    """Do nothing: the raw Celery side of the drain benchmark."""
    return None


def noop_process(job: Job) -> None:
    """Do nothing: the adapter side of the drain benchmark."""
    return None


strategy = CeleryJobQueueStrategy(app)

if os.environ.get(ENV_ADAPTER_QUEUE):
    strategy.start(os.environ[ENV_ADAPTER_QUEUE], noop_process)
