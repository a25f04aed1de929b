"""A script that runs an embedded worker ends within a bound, even with a job still running.

Python joins the pool's threads before ``atexit`` handlers run, so without the adapter's
thread-shutdown hook such a script would wait for the job however long it takes. The job is
neither deferred nor completed: its message stays unacknowledged and it runs again as a job of
a lost worker elsewhere.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from adapter import JobState
from adapter.celery.embedded import EXIT_ABANDONED
from adapter.store import open_store

#: The stop's wait the script sets, in seconds.
STOP_TIMEOUT_S = 1.0
#: When the script must be gone after its last line at the latest, with room for a noisy machine.
EXIT_BOUND_S = STOP_TIMEOUT_S + 30.0

SCRIPT = f"""
import sys, time
from pathlib import Path

import adapter.celery.embedded as embedded
from adapter import CeleryJobQueueStrategy, Job
from adapter.celery.app import create_app

embedded.STOP_TIMEOUT_S = {STOP_TIMEOUT_S}
started = Path(sys.argv[1])


def hold(job):
    started.write_text(job.id)
    time.sleep(600)


jobs = CeleryJobQueueStrategy(create_app("embedded-exit"), embedded_worker=True)
jobs.start("hold", hold)
jobs.add(Job(queue_name="hold"))
deadline = time.monotonic() + 60
while not started.exists() and time.monotonic() < deadline:
    time.sleep(0.05)
print("job running", flush=True)
"""


def test_a_script_exits_within_the_bound_leaving_its_running_job_to_a_later_worker(
    tmp_path: Path,
) -> None:
    script, started = tmp_path / "script.py", tmp_path / "started"
    script.write_text(SCRIPT)
    env = {**os.environ, "ADAPTER_BROKER_URL": "filesystem://", "ADAPTER_DATA_DIR": str(tmp_path)}
    try:
        done = subprocess.run(
            [sys.executable, str(script), str(started)],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=60 + EXIT_BOUND_S,
        )
    except subprocess.TimeoutExpired as err:
        raise AssertionError(f"the script did not exit: {err.stderr!r}") from None
    assert "job running" in done.stdout, done.stderr[-3000:]
    assert done.returncode == EXIT_ABANDONED, done.stderr[-3000:]
    assert "still running on the embedded worker" in done.stderr
    store = open_store(f"sqlite:///{tmp_path / 'jobs.sqlite3'}")
    job = store.get(started.read_text())
    assert job is not None
    assert (job.state, job.attempts) == (JobState.RUNNING, 1)  # kept, neither deferred nor done
