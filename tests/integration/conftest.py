"""Real ``celery worker`` subprocesses against real brokers, and strategies to feed them."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from celery import Celery

from adapter import CeleryJobQueueStrategy
from adapter.celery.embedded import filesystem_transport_options
from tests.support import PROCESS_TAG, wait_for

ROOT = Path(__file__).resolve().parents[2]


#: Plain Celery's worker for the test app.
CELERY_WORKER = (
    sys.executable,
    "-m",
    "celery",
    "-A",
    "tests.integration.worker_app",
    "worker",
    "--without-heartbeat",
    "--without-mingle",
    "--without-gossip",
    "-l",
    "INFO",
)
#: The adapter's worker command for the test app.
JOBQUEUE_WORKER = (
    str(Path(sys.executable).parent / "jobqueue"),
    "worker",
    "tests.integration.worker_app",
)


@dataclass
class WorkerProcess:
    """A worker process for ``tests.integration.worker_app``, in its own process group."""

    env: dict[str, str]
    log: Path
    ready_file: Path
    args: list[str]
    command: list[str] = field(default_factory=lambda: list(CELERY_WORKER))
    popen: subprocess.Popen[bytes] | None = field(default=None)

    def start(self) -> str:
        """Start the worker and return what it reported once ready."""
        self.ready_file.unlink(missing_ok=True)
        with self.log.open("ab") as log:
            self.popen = subprocess.Popen(
                [*self.command, "-n", f"itest-{uuid.uuid4().hex[:8]}@%h", *self.args],
                cwd=ROOT,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        return wait_for(self._ready, f"the worker to be ready (log: {self.log})", timeout=90)

    def _ready(self) -> str | None:
        if self.popen is not None and self.popen.poll() is not None:
            raise AssertionError(f"worker exited with {self.popen.returncode}: {self.log_text()}")
        return self.ready_file.read_text() if self.ready_file.exists() else None

    def kill(self) -> None:
        """SIGKILL the worker and its pool children at once."""
        if self.popen is not None and self.popen.poll() is None:
            os.killpg(self.popen.pid, signal.SIGKILL)
            self.popen.wait(30)

    def terminate(self) -> int:
        """Send SIGTERM to the worker's main process only; return its exit code."""
        assert self.popen is not None
        self.popen.send_signal(signal.SIGTERM)
        return self.popen.wait(90)

    def stop(self) -> None:
        """Warm shutdown (SIGTERM to the main process, as Celery documents), then SIGKILL.

        Not SIGTERM to the whole group: a prefork worker on ``filesystem://`` whose pool
        children get SIGTERM too hangs in the pool's join until it is killed (30 s here).
        """
        if self.popen is None:
            return
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(30)
            except subprocess.TimeoutExpired:
                self.kill()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.popen.pid, signal.SIGKILL)  # any pool child left behind

    def log_text(self) -> str:
        """Return the worker's output so far."""
        return self.log.read_text(errors="replace") if self.log.exists() else ""


@pytest.fixture(params=["embedded", "redis", "rabbitmq"])
def broker_url(request: pytest.FixtureRequest) -> str:
    """The embedded default broker (``filesystem://``), or a real server's URL."""
    if request.param == "embedded":
        return "filesystem://"
    return str(request.getfixturevalue("redis_url" if request.param == "redis" else "amqp_url"))


#: Runs a test on the Redis and RabbitMQ servers only (not on the embedded default).
SERVER_BROKERS = pytest.mark.parametrize("broker_url", ["redis", "rabbitmq"], indirect=True)


@pytest.fixture
def control(producer: CeleryJobQueueStrategy) -> CeleryJobQueueStrategy:
    """The producer, speaking on the control exchange of this test process's workers."""
    producer.app.conf.control_exchange = f"adapter-test-ctl-{PROCESS_TAG}"
    return producer


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    """Where the embedded broker keeps its files, shared by the test and its workers."""
    return tmp_path / "data"


@pytest.fixture
def store_url(tmp_path: Path) -> str:
    """A SQLite job store file shared by the test and the worker processes."""
    return f"sqlite:///{tmp_path / 'jobs.sqlite3'}"


@pytest.fixture
def producer(broker_url: str, store_url: str, data_dir: Path) -> Iterator[CeleryJobQueueStrategy]:
    """A strategy in the test process that only adds and inspects jobs."""
    app = Celery("producer")
    app.config_from_object("celeryconfig")
    app.conf.broker_url = broker_url
    if broker_url.startswith("filesystem://"):
        app.conf.broker_transport_options = filesystem_transport_options(str(data_dir))
    made = CeleryJobQueueStrategy(app, store=store_url, embedded_worker=False)
    yield made
    made.destroy()


@pytest.fixture
def make_worker(
    broker_url: str, store_url: str, data_dir: Path, tmp_path: Path
) -> Iterator[Callable[..., WorkerProcess]]:
    """``make_worker(queues, *args, **env)`` returns an unstarted worker; all are killed after."""
    made: list[WorkerProcess] = []

    def make(
        queues: str, *args: str, command: tuple[str, ...] = CELERY_WORKER, **extra_env: str
    ) -> WorkerProcess:
        env = {
            **os.environ,
            "ADAPTER_BROKER_URL": broker_url,
            "ADAPTER_STORE_URL": store_url,
            "ADAPTER_DATA_DIR": str(data_dir),
            "TEST_QUEUES": queues,
            "TEST_CONTROL_EXCHANGE": f"adapter-test-ctl-{PROCESS_TAG}",
            "PYTHONPATH": str(ROOT),
            **extra_env,
        }
        index = len(made)
        ready_file = tmp_path / f"ready{index}"
        env["TEST_READY_FILE"] = str(ready_file)
        worker = WorkerProcess(
            env, tmp_path / f"worker{index}.log", ready_file, list(args), list(command)
        )
        made.append(worker)
        return worker

    yield make
    for worker in made:
        worker.kill()
