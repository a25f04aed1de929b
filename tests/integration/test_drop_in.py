"""The adapter dropped into a Celery shop: installed anywhere, workers alone run jobs, the
shop's own tasks untouched. Each test runs on the embedded broker, Redis and RabbitMQ.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import signal
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from celery import Celery

from adapter import CeleryJobQueueStrategy, Job, JobState
from adapter.celery.embedded import filesystem_transport_options
from adapter.settings import sqlite_store_url
from adapter.store import open_store
from tests.integration.conftest import ROOT, WorkerProcess
from tests.support import PROCESS_TAG, delete_queues, unique_queue, wait_for, wait_settled

#: ``celery worker`` for the shop's app module.
SHOP_WORKER = (
    sys.executable,
    "-m",
    "celery",
    "-A",
    "tests.integration.shop_app",
    "worker",
    "--pool",
    "prefork",
    "--concurrency",
    "1",
    "--without-heartbeat",
    "--without-mingle",
    "--without-gossip",
    "-l",
    "INFO",
)

#: The README's worker module, as a user writes it in an empty project folder.
TASKS_PY = """\
import os

from adapter import CeleryJobQueueStrategy, Job
from adapter.celery.app import create_app

app = create_app("shop")
app.conf.control_exchange = os.environ["TEST_CONTROL_EXCHANGE"]  # apart from other tests
jobs = CeleryJobQueueStrategy(app)


def greet(job: Job) -> str:
    return f"hello {job.data['name']}"


jobs.start(os.environ["TEST_QUEUE"], greet)
"""


def _clean_environment(**values: str) -> dict[str, str]:
    """Return this process's environment without the repository's or the adapter's settings."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("ADAPTER_", "CELERY_", "TEST_"))
        and key not in ("PYTHONPATH", "VIRTUAL_ENV")
    }
    return {**env, **values}


@pytest.fixture(scope="session")
def installed_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A virtual environment with the package installed from its wheel (not editable).

    Built once per test run: xdist workers share it through a lock in the run's temp folder.
    """
    base = tmp_path_factory.getbasetemp()
    shared = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base
    venv = shared / "installed-venv"
    with (shared / "installed-venv.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (venv / "ready").exists():
            return venv
        source = shared / "installed-source"
        shutil.rmtree(source, ignore_errors=True)
        ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
        shutil.copytree(ROOT / "adapter", source / "adapter", ignore=ignore)
        for name in ("pyproject.toml", "README.md"):
            shutil.copy(ROOT / name, source / name)
        wheels = shared / "wheels"
        pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
        subprocess.run([*pip, "wheel", "--no-deps", "-w", str(wheels), str(source)], check=True)
        (wheel,) = wheels.glob("adapter-*.whl")
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        venv_pip = [str(venv / "bin/python"), "-m", "pip", "--disable-pip-version-check", "-q"]
        subprocess.run([*venv_pip, "install", str(wheel)], check=True)
        (venv / "ready").write_text(str(wheel))
    return venv


@pytest.mark.timeout(300)  # building the wheel and its virtual environment may take minutes
def test_installed_in_an_empty_folder_the_cli_adds_lists_and_runs_jobs(
    installed_venv: Path, broker_url: str, tmp_path: Path
) -> None:
    project, data_dir, queue = tmp_path / "project", tmp_path / "data", unique_queue("installed")
    project.mkdir()
    (project / "tasks.py").write_text(TASKS_PY)
    env = _clean_environment(
        ADAPTER_BROKER_URL=broker_url,
        ADAPTER_DATA_DIR=str(data_dir),  # the default SQLite store lives here too
        TEST_QUEUE=queue,
        TEST_CONTROL_EXCHANGE=f"adapter-test-ctl-{PROCESS_TAG}",
    )
    jobqueue = str(installed_venv / "bin/jobqueue")

    def cli(*args: str) -> dict[str, object]:
        done = subprocess.run(
            [jobqueue, *args], cwd=project, env=env, capture_output=True, text=True, timeout=120
        )
        assert done.returncode == 0, done.stderr
        found: dict[str, object] = json.loads(done.stdout)
        return found

    added = cli("add", queue, '{"name": "ada"}', "--json")
    listed = cli("--json", "list", "--queue", queue)
    assert listed["totalItems"] == 1
    log = tmp_path / "worker.log"
    with log.open("wb") as output:
        worker = subprocess.Popen(
            [jobqueue, "worker", "tasks", "--pool", "threads", "--concurrency", "1",
             "-n", f"installed-{uuid.uuid4().hex[:8]}@%h"],
            cwd=project, env=env, stdout=output, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
    store = open_store(sqlite_store_url(str(data_dir)))
    try:

        def completed() -> Job | None:
            found = store.get(str(added["id"]))
            return found if found is not None and found.is_settled else None

        done = wait_for(completed, f"job {added['id']} to settle (log: {log})", timeout=90)
        assert (done.state, done.result) == (JobState.COMPLETED, "hello ada")
        shown = cli("show", str(added["id"]), "--json")
        assert shown["state"] == "COMPLETED"
    finally:
        store.close()
        if worker.poll() is None:
            worker.send_signal(signal.SIGTERM)
            try:
                worker.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(worker.pid, signal.SIGKILL)


@pytest.mark.timeout(300)  # building the wheel and its virtual environment may take minutes
def test_the_installed_package_carries_the_job_message_schema(
    installed_venv: Path, tmp_path: Path
) -> None:
    read = "from adapter.schema import job_message_schema; print(job_message_schema()['title'])"
    done = subprocess.run(
        [str(installed_venv / "bin/python"), "-c", read],
        cwd=tmp_path, env=_clean_environment(), capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "adapter job message"


WEB_PROCESS = """\
import json, sys, threading, time
from adapter import Job
from tests.integration import worker_app

job = worker_app.strategy.add(Job(queue_name=sys.argv[1], data={"n": 1}))
worker_app.strategy.flush()
time.sleep(2)  # long enough for any worker of this process to have taken the job
print(json.dumps({
    "id": job.id,
    "state": worker_app.strategy.find_one(job.id).state,
    "threads": sorted(t.name for t in threading.enumerate()),
}))
"""


def test_a_web_process_importing_the_worker_module_runs_no_job(
    producer: CeleryJobQueueStrategy, broker_url: str, store_url: str, data_dir: Path
) -> None:
    queue = unique_queue("web")
    env = {
        **os.environ,
        "ADAPTER_BROKER_URL": broker_url,
        "ADAPTER_STORE_URL": store_url,
        "ADAPTER_DATA_DIR": str(data_dir),
        "TEST_QUEUES": queue,
        "TEST_CONTROL_EXCHANGE": f"adapter-test-ctl-{PROCESS_TAG}",
        "PYTHONPATH": str(ROOT),
    }
    try:
        done = subprocess.run(
            [sys.executable, "-c", WEB_PROCESS, queue],
            cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        report = json.loads(done.stdout.strip().splitlines()[-1])

        assert report["state"] == "PENDING"
        assert "adapter-embedded-worker" not in report["threads"]
        stored = producer.find_one(report["id"])
        assert stored is not None
        assert (stored.state, stored.attempts) == (JobState.PENDING, 0)
    finally:
        delete_queues(producer, queue)


@pytest.fixture
def shop_client(
    broker_url: str, redis_url: str, data_dir: Path
) -> Iterator[Callable[[str], Celery]]:
    """``shop_client(queue)``: the shop's app as a web process holds it, sending to ``queue``."""
    made: list[Celery] = []

    def make(queue: str) -> Celery:
        app = Celery("shop-client")
        app.conf.update(broker_url=broker_url, result_backend=redis_url, task_default_queue=queue)
        if broker_url.startswith("filesystem://"):
            app.conf.broker_transport_options = filesystem_transport_options(str(data_dir))
        made.append(app)
        return app

    yield make
    for app in made:
        app.close()


def test_a_shops_own_task_keeps_its_result_beside_the_jobs(
    producer: CeleryJobQueueStrategy,
    make_worker: Callable[..., WorkerProcess],
    shop_client: Callable[[str], Celery],
    redis_url: str,
) -> None:
    queue, shop_queue = unique_queue("shop-jobs"), unique_queue("shop-tasks")
    worker = make_worker(
        queue,
        command=SHOP_WORKER,
        CELERY_RESULT_BACKEND=redis_url,
        TEST_SHOP_QUEUE=shop_queue,
    )
    try:
        worker.start()
        result = shop_client(shop_queue).send_task("shop.total", args=[2, 3, 4])
        job = producer.add(Job(queue_name=queue, data={"name": "grace"}))

        # Another test of this xdist process may have run an embedded worker, which tells
        # Celery (process-wide) that joins would block; this process is not a task.
        assert result.get(timeout=60, disable_sync_subtasks=False) == 9
        settled = wait_settled(producer, job)
        assert (settled.state, settled.result) == (JobState.COMPLETED, "hello grace")
    finally:
        worker.stop()
        delete_queues(producer, queue)
        with producer.app.connection_for_write() as connection, contextlib.suppress(Exception):
            connection.default_channel.queue_delete(shop_queue)
