"""Secrets never print from the command line: ``check``, ``queues``, a worker and its health.

Each run gives the broker, the job store and the result backend a password holding one of
``#``, ``/``, ``?``, ``@``, ``%`` unencoded (tests/unit/test_masking.py, which also covers the
errors of the library). No server is needed: every URL points at a port nobody listens on, so
``queues`` finds the broker down and a worker keeps retrying it after its start-up banner.
The commands run from an empty folder, so only the environment configures them.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.integration.conftest import JOBQUEUE_WORKER, ROOT
from tests.integration.test_worker_command import free_port
from tests.support import wait_for
from tests.unit.test_masking import AWKWARD, leaks, password

JOBQUEUE = str(Path(sys.executable).parent / "jobqueue")


def environment(char: str, folder: Path, store: str = "postgres") -> dict[str, str]:
    """Return an environment whose broker, store and result backend passwords hold ``char``."""
    secret, port = password(char), free_port()
    stores = {
        "postgres": f"postgresql+psycopg://user:{secret}@127.0.0.1:{port}/db",
        "memory": f"memory://secrets-{char.encode().hex()}",
    }
    return {
        **os.environ,
        "ADAPTER_BROKER_URL": f"amqp://user:{secret}@127.0.0.1:{port}//",
        "ADAPTER_STORE_URL": stores[store],
        "CELERY_RESULT_BACKEND": f"redis://user:{secret}@127.0.0.1:{port}/1",
        "ADAPTER_DATA_DIR": str(folder / "data"),
        "PYTHONPATH": str(ROOT),
    }


@pytest.mark.parametrize("char", AWKWARD)
def test_jobqueue_check_shows_every_url_masked(char: str, tmp_path: Path) -> None:
    ran = subprocess.run(
        [JOBQUEUE, "check"], env=environment(char, tmp_path), cwd=tmp_path, capture_output=True
    )
    output = (ran.stdout + ran.stderr).decode()
    assert not leaks(output) and "***" in output, output
    assert "Traceback" not in output


@pytest.mark.parametrize("char", AWKWARD)
def test_jobqueue_queues_with_the_broker_down_prints_one_masked_line(
    char: str, tmp_path: Path
) -> None:
    env = environment(char, tmp_path, store="memory")
    ran = subprocess.run([JOBQUEUE, "queues"], env=env, cwd=tmp_path, capture_output=True)
    error = ran.stderr.decode()
    assert ran.returncode == 1 and ran.stdout == b""
    assert len(error.strip().splitlines()) == 1, error
    assert error.startswith(("jobqueue: cannot reach the broker ", "jobqueue: malformed "))
    assert "***" in error and not leaks(error)


@pytest.mark.parametrize("char", AWKWARD)
def test_worker_start_up_output_and_health_reply_show_no_password(
    char: str, tmp_path: Path
) -> None:
    env = {**environment(char, tmp_path), "TEST_QUEUES": "secrets=echo"}
    health = free_port()
    log = tmp_path / "worker.log"
    with log.open("wb") as out:
        worker = subprocess.Popen(
            [*JOBQUEUE_WORKER, "--pool", "solo", "--health-port", str(health)],
            cwd=tmp_path,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        # the banner, then kombu retrying the broker; or one line refusing a malformed URL
        wait_for(
            lambda: worker.poll() is not None or "Trying again" in log.read_text(),
            f"the worker's start-up output (log: {log})",
            timeout=90,
        )
        if worker.poll() is None:  # the broker is down: 503, with a reason that leaks nothing
            with pytest.raises(urllib.error.HTTPError) as refused:
                urllib.request.urlopen(f"http://127.0.0.1:{health}/health", timeout=10)
            reply = refused.value.read().decode()
            assert refused.value.code == 503
            assert not leaks(reply) and '"reason"' in reply, reply
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(worker.pid, signal.SIGKILL)
        worker.wait(30)
    output = log.read_text()
    assert (not leaks(output) and "***" in output) or "**@" in output, output
    assert "Traceback" not in output
