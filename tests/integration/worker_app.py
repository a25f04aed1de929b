"""The app module a real ``celery -A tests.integration.worker_app worker`` imports in tests.

It declares queues the way the README tells users to: build the app from celeryconfig, make
the strategy, and ``start`` each queue with its process at import time. The environment says
which queues (TEST_QUEUES, comma-separated), where to report readiness (TEST_READY_FILE),
which control exchange to use (TEST_CONTROL_EXCHANGE), where spans go (TEST_SPAN_FILE, with
opentelemetry-instrumentation-celery on too when TEST_OTEL_CELERY is set) and, for ``celery
beat``, the queue a job is added to every second (TEST_BEAT_QUEUE) through ``adapter.add_job``
sent on the celery queue TEST_BEAT_ROUTE.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import Any

from celery import Celery
from celery.signals import worker_ready

from adapter import CeleryJobQueueStrategy, Job, JobQueueError

if os.environ.get("TEST_SPAN_FILE"):  # OpenTelemetry's SDK on, spans to this file
    from tests.integration.span_file import configure_file_tracing

    configure_file_tracing(
        os.environ["TEST_SPAN_FILE"], instrument_celery=bool(os.environ.get("TEST_OTEL_CELERY"))
    )

app = Celery("worker-app")
app.config_from_object("celeryconfig")
# Broadcasts stay among the workers of one test process (tests/integration/conftest.py).
app.conf.control_exchange = os.environ.get("TEST_CONTROL_EXCHANGE", "adapter-test-ctl-worker")
app.conf.adapter_dead_letter_queue = os.environ.get("TEST_DEAD_LETTER_QUEUE")
strategy = CeleryJobQueueStrategy(app, backoff_strategy=lambda queue, attempts, job: 10)
if os.environ.get("TEST_BEAT_QUEUE"):  # `celery beat` adds a job to it every second
    app.conf.beat_schedule = {
        "test-tick": {
            "task": "adapter.add_job",
            "schedule": 1.0,
            "args": [os.environ["TEST_BEAT_QUEUE"], {"from": "beat"}],
            "options": {"queue": os.environ["TEST_BEAT_ROUTE"]},
        }
    }


def echo(job: Job) -> Any:
    """Return the job's data with the pid of the process that ran it."""
    return {"data": job.data, "pid": os.getpid()}


def slow_first_attempt(job: Job) -> str:
    """Block the first attempt (long enough to be killed, or until cancelled), finish later ones."""
    job.set_progress(10)
    deadline = time.monotonic() + 120
    while job.attempts == 1 and time.monotonic() < deadline:
        job.raise_if_cancelled()  # so a worker stopping after a cancel need not wait two minutes
        time.sleep(0.05)
    return f"done on attempt {job.attempts}"


def gated(job: Job) -> str:
    """Block until the file named by the job's data exists (at most two minutes)."""
    release = Path(job.data["release_file"])
    job.set_progress(10)
    deadline = time.monotonic() + 120
    while not release.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    return f"released on attempt {job.attempts}"


def counted(job: Job) -> str:
    """Append a line to the job's ``runs_file`` on every run, then block like ``gated``."""
    with open(job.data["runs_file"], "a") as runs:
        runs.write(f"{job.id} attempt {job.attempts} pid {os.getpid()}\n")
    return gated(job)


def flaky(job: Job) -> str:
    """Like ``counted``, each attempt released by its own file (``release_file`` + ``.<n>``);
    the first attempt then fails, later ones succeed."""
    with open(job.data["runs_file"], "a") as runs:
        runs.write(f"{job.id} attempt {job.attempts} pid {os.getpid()}\n")
    release = Path(f"{job.data['release_file']}.{job.attempts}")
    deadline = time.monotonic() + 120
    while not release.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    if job.attempts == 1:
        raise ValueError("the first attempt fails")
    return f"done on attempt {job.attempts}"


def crash(job: Job) -> str:
    """Kill the process running the job, as an out-of-memory kill would, on every attempt."""
    os.kill(os.getpid(), signal.SIGKILL)
    return "unreachable"


def logged(job: Job) -> str:
    """Append the job's id to the file TEST_RUN_LOG (one line per run), after a short nap."""
    with open(os.environ["TEST_RUN_LOG"], "a") as log:
        log.write(f"{job.id}\n")
    time.sleep(float(os.environ.get("TEST_NAP_S", "0")))
    return "logged"


def mixed(job: Job) -> str:
    """Fail when the job's data says so, else succeed."""
    if job.data.get("fail"):
        raise ValueError("planned failure")
    return "ok"


PROCESSES = {
    "echo": echo,
    "slow": slow_first_attempt,
    "gated": gated,
    "counted": counted,
    "flaky": flaky,
    "crash": crash,
    "logged": logged,
    "mixed": mixed,
}

for spec in filter(None, os.environ.get("TEST_QUEUES", "").split(",")):
    queue_name, _, process_name = spec.partition("=")
    strategy.start(queue_name, PROCESSES[process_name or "echo"])


@worker_ready.connect  # type: ignore[untyped-decorator]
def _report_ready(**_: Any) -> None:
    """Try a late start with a lambda (refused under prefork) and one by import path."""
    outcome = "late lambda accepted"
    late = os.environ.get("TEST_LATE_QUEUE")
    if late:
        try:
            strategy.start(late + "-lambda", lambda job: "lambda ran")
        except JobQueueError as err:
            outcome = f"late lambda refused: {err}"
        strategy.start(late, echo)
    ready_file = os.environ.get("TEST_READY_FILE")
    if ready_file:
        Path(ready_file).write_text(outcome)
