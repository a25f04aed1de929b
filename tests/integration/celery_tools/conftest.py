"""Celery's own tools on the jobs (revoke, purge, AsyncResult, Flower), on Redis and RabbitMQ:
fixtures and helpers."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from celery import Celery

from tests.integration.conftest import ROOT
from tests.support import PROCESS_TAG


@pytest.fixture(params=["redis", "rabbitmq"])
def broker_url(request: pytest.FixtureRequest) -> str:
    """A real broker: Celery's controls are tested on Redis and RabbitMQ."""
    return str(request.getfixturevalue("redis_url" if request.param == "redis" else "amqp_url"))


@pytest.fixture
def client(broker_url: str, redis_url: str) -> Iterator[Celery]:
    """A shop's plain Celery app on the broker, with a Redis result backend (the tests' own
    database: keys are job ids, never flushed), broadcasting to this test process's workers."""
    app = Celery("client", broker=broker_url, backend=redis_url)
    app.conf.control_exchange = f"adapter-test-ctl-{PROCESS_TAG}"
    yield app
    app.close()


def runs(runs_file: Path) -> list[str]:
    """Return the lines ``counted`` wrote: ``<job id> attempt <n> pid <pid>``, one per run."""
    return runs_file.read_text().splitlines() if runs_file.exists() else []


def pid_of_run(runs_file: Path, job_id: str) -> int | None:
    """Return the pid of the process that ran ``job_id`` first, or None before it ran."""
    for line in runs(runs_file):
        if line.startswith(f"{job_id} "):
            return int(line.rsplit(" ", 1)[1])
    return None


def process_gone(pid: int) -> bool:
    """True when ``pid`` no longer runs (gone, or a zombie its parent has not reaped yet)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1].startswith("Z")
    except (FileNotFoundError, IndexError):
        return True


def celery_tool(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """Run ``celery -A tests.integration.worker_app ARGS`` as a shop would."""
    command = [sys.executable, "-m", "celery", "-A", "tests.integration.worker_app", *args]
    return subprocess.run(
        command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=False
    )


def jobqueue(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """Run ``jobqueue --app tests.integration.worker_app ARGS``."""
    command = [
        str(Path(sys.executable).parent / "jobqueue"),
        "--app",
        "tests.integration.worker_app",
    ]
    return subprocess.run(
        [*command, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
        check=False,
    )  # fmt: skip


def tool_env(broker_url: str, store_url: str, **extra: str) -> dict[str, str]:
    """The environment of a command-line tool for the test app: its broker and store."""
    return {
        **os.environ,
        "ADAPTER_BROKER_URL": broker_url,
        "ADAPTER_STORE_URL": store_url,
        "TEST_CONTROL_EXCHANGE": f"adapter-test-ctl-{PROCESS_TAG}",
        "PYTHONPATH": str(ROOT),
        **extra,
    }
