"""Celery beat adds jobs through ``adapter.add_job``: one job per tick, none twice.

A real ``celery beat`` process (a 1 s schedule, its schedule file in the test's folder) and a
real worker, on Redis and RabbitMQ.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from adapter import CeleryJobQueueStrategy, JobState
from tests.integration.conftest import ROOT, WorkerProcess
from tests.support import delete_queues, unique_queue, wait_for

#: Ticks the test waits for before it stops beat.
TICKS = 3
#: What beat logs (at DEBUG) once it has sent an entry of the schedule; its INFO line "Sending
#: due task" comes before the send, which a SIGTERM just after it cuts short.
SENT = "adapter.add_job sent. id->"


@pytest.fixture(params=["redis", "rabbitmq"])
def broker_url(request: pytest.FixtureRequest) -> str:
    """A real server's URL (overrides conftest's, which includes the embedded broker)."""
    return str(request.getfixturevalue("redis_url" if request.param == "redis" else "amqp_url"))


def test_celery_beat_adds_one_job_per_tick(
    producer: CeleryJobQueueStrategy,
    make_worker: Callable[..., WorkerProcess],
    tmp_path: Path,
) -> None:
    queue, route = unique_queue("beat"), unique_queue("beat-adds")
    beat_env = {"TEST_BEAT_QUEUE": queue, "TEST_BEAT_ROUTE": route}
    worker = make_worker(
        f"{queue}=echo", "-P", "threads", "-c", "2", "-Q", f"{route},jobs.{queue}", **beat_env
    )
    beat_log = tmp_path / "beat.log"
    try:
        worker.start()
        with beat_log.open("wb") as log:
            beat = subprocess.Popen(
                [sys.executable, "-m", "celery", "-A", "tests.integration.worker_app", "beat",
                 "-s", str(tmp_path / "beat-schedule"), "--max-interval", "1", "-l", "DEBUG"],
                cwd=ROOT, env=worker.env, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True,
            )  # fmt: skip
        try:
            wait_for(lambda: beat_log.read_text().count(SENT) >= TICKS, f"{TICKS} ticks of beat")
        finally:
            os.killpg(beat.pid, signal.SIGTERM)
            beat.wait(30)
        sent = beat_log.read_text().count(SENT)

        def all_completed() -> list[JobState] | None:
            jobs = producer.find_many({"filter": {"queueName": {"eq": queue}}}).items
            states = [job.state for job in jobs]
            return states if states == [JobState.COMPLETED] * sent else None

        wait_for(all_completed, f"{sent} jobs completed (worker log: {worker.log})")
        jobs = producer.find_many({"filter": {"queueName": {"eq": queue}}}).items
    finally:
        worker.stop()
        delete_queues(producer, queue)
        with producer.app.connection_for_write() as connection:
            connection.default_channel.queue_delete(route)
    assert sent >= TICKS
    assert len(jobs) == len({job.id for job in jobs}) == sent
    assert all(job.data == {"from": "beat"} and job.attempts == 1 for job in jobs)
