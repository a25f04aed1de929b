"""A shop's Celery app module: its own task with a result backend, beside the adapter's jobs.

``celery -A tests.integration.shop_app worker`` imports it. The app is the README's
``create_app`` one, so the broker, store and result backend (``CELERY_RESULT_BACKEND``) come
from the environment; the shop's task keeps Celery's own defaults. The environment also names
the shop's default celery queue (TEST_SHOP_QUEUE), the job queues (TEST_QUEUES), the control
exchange (TEST_CONTROL_EXCHANGE) and the readiness file (TEST_READY_FILE).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from celery.signals import worker_ready

from adapter import CeleryJobQueueStrategy, Job
from adapter.celery.app import create_app

app = create_app("shop")
app.conf.task_default_queue = os.environ.get("TEST_SHOP_QUEUE", "shop")
app.conf.control_exchange = os.environ.get("TEST_CONTROL_EXCHANGE", "adapter-test-ctl-shop")
jobs = CeleryJobQueueStrategy(app)


@app.task(name="shop.total")  # type: ignore[untyped-decorator]
def total(*numbers: int) -> int:
    """Return the sum of ``numbers``: the shop's own task, whose result a caller reads."""
    return sum(numbers)


def greet(job: Job) -> str:
    """Greet the name in the job's data."""
    return f"hello {job.data['name']}"


for queue_name in filter(None, os.environ.get("TEST_QUEUES", "").split(",")):
    jobs.start(queue_name, greet)


@worker_ready.connect  # type: ignore[untyped-decorator]
def _report_ready(**_: Any) -> None:
    ready_file = os.environ.get("TEST_READY_FILE")
    if ready_file:
        Path(ready_file).write_text("ready")
