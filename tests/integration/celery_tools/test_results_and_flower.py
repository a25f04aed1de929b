"""Celery's result API and Flower agree with the job store, on Redis and RabbitMQ."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from celery import Celery

from adapter import CeleryJobQueueStrategy, Job, JobState
from tests.integration.celery_tools.conftest import pid_of_run, runs, tool_env
from tests.integration.conftest import ROOT, WorkerProcess
from tests.support import delete_queues, unique_queue, wait_for, wait_job, wait_settled


def test_async_result_reports_result_failure_progress_and_revoked(
    producer: CeleryJobQueueStrategy,
    make_worker: Callable[..., WorkerProcess],
    client: Celery,
    redis_url: str,
    tmp_path: Path,
) -> None:
    ok, gate = unique_queue("result"), unique_queue("progress")
    release = tmp_path / "release"
    worker = make_worker(
        f"{ok}=mixed,{gate}=gated", "-P", "prefork", "-c", "2", CELERY_RESULT_BACKEND=redis_url
    )
    try:
        worker.start()
        done = producer.add(Job(queue_name=ok, data={}))
        failed = producer.add(Job(queue_name=ok, data={"fail": True}))
        gated = producer.add(Job(queue_name=gate, data={"release_file": str(release)}))

        # disable_sync_subtasks: an embedded worker of another test in this process may have
        # told Celery (process-wide) that joins would block; this process runs no task.
        result = client.AsyncResult(done.id).get(timeout=60, disable_sync_subtasks=False)
        failure = client.AsyncResult(failed.id)
        failure.get(timeout=60, propagate=False, disable_sync_subtasks=False)
        running = client.AsyncResult(gated.id)
        wait_for(lambda: running.state == "PROGRESS", "the running job's progress")
        progress = running.info
        producer.cancel_job(gated.id or "")
        release.touch()
        wait_for(lambda: client.AsyncResult(gated.id).state == "REVOKED", "REVOKED")
        stored = wait_settled(producer, gated)
    finally:
        worker.stop()
        delete_queues(producer, ok, gate)
    assert result == "ok"
    assert failure.state == "FAILURE" and "planned failure" in str(failure.result)
    assert progress == {"progress": 10}
    assert stored.state == JobState.CANCELLED


def test_without_a_result_backend_nothing_is_written(
    producer: CeleryJobQueueStrategy, make_worker: Callable[..., WorkerProcess], redis_url: str
) -> None:
    queue = unique_queue("no-results")
    worker = make_worker(f"{queue}=echo", "-P", "threads", "-c", "1")
    try:
        worker.start()
        job = producer.add(Job(queue_name=queue, data={"n": 1}))
        assert wait_settled(producer, job).state == JobState.COMPLETED
    finally:
        worker.stop()
        delete_queues(producer, queue)
    client = redis.Redis.from_url(redis_url)
    try:
        assert client.exists(f"celery-task-meta-{job.id}") == 0
    finally:
        client.close()


@pytest.fixture
def flower(broker_url: str, store_url: str, tmp_path: Path) -> Iterator[str]:
    """Flower on a free port against the broker; yields its base URL."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = tool_env(broker_url, store_url, FLOWER_UNAUTHENTICATED_API="true")
    log = tmp_path / "flower.log"
    command = [sys.executable, "-m", "celery", "-A", "tests.integration.worker_app", "flower",
               f"--port={port}", "--address=127.0.0.1"]  # fmt: skip
    with log.open("wb") as output:
        process = subprocess.Popen(
            command, cwd=ROOT, env=env, stdout=output, stderr=subprocess.STDOUT
        )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: _get(f"{base}/healthcheck") is not None, f"Flower (log: {log})")
        yield base
    finally:
        process.terminate()
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()


def _get(url: str) -> Any:
    """GET ``url``; its JSON (or text), or None when it does not answer 200 yet."""
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            body = response.read().decode()
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return None
    try:
        return json.loads(body)
    except ValueError:
        return body


def _flower_task(base: str, job_id: str, state: str) -> dict[str, Any] | None:
    found = _get(f"{base}/api/task/info/{job_id}")
    return found if isinstance(found, dict) and found.get("state") == state else None


def _retried(base: str, job_id: str) -> bool:
    found = _get(f"{base}/api/task/info/{job_id}")
    return isinstance(found, dict) and found.get("retried") is not None and found["retries"] == 1


def test_flower_shows_results_revokes_and_the_same_short_args_on_every_attempt(
    producer: CeleryJobQueueStrategy,
    make_worker: Callable[..., WorkerProcess],
    flower: str,
    redis_url: str,
    tmp_path: Path,
) -> None:
    flaky, gate, warm = unique_queue("flaky"), unique_queue("gate"), unique_queue("warm")
    runs_file, release = tmp_path / "runs", tmp_path / "release"
    worker = make_worker(
        f"{flaky}=flaky,{gate}=gated,{warm}=echo", "-P", "prefork", "-c", "2", "-E",
        CELERY_RESULT_BACKEND=redis_url,
    )  # fmt: skip
    data = {"runs_file": str(runs_file), "release_file": str(release)}
    try:
        worker.start()
        warm_job = producer.add(Job(queue_name=warm, data={}))
        wait_for(lambda: _flower_task(flower, warm_job.id or "", "SUCCESS"), "Flower to listen")
        job = producer.add(Job(queue_name=flaky, data=data, retries=1))
        cancelled = producer.add(Job(queue_name=gate, data=data))
        wait_for(lambda: pid_of_run(runs_file, job.id or ""), "the first attempt to run")
        first = wait_for(lambda: _flower_task(flower, job.id or "", "STARTED"), "attempt 1")
        wait_job(producer, cancelled.id or "", lambda found: found.progress == 10, "running")
        producer.cancel_job(cancelled.id or "")
        release.touch()  # the cancelled job's process returns; it stays CANCELLED
        Path(f"{release}.1").touch()
        wait_for(lambda: len(runs(runs_file)) == 2, "attempt 2 to run")
        wait_for(lambda: _retried(flower, job.id or ""), "Flower to hear of the retry")
        Path(f"{release}.2").touch()
        second = wait_for(lambda: _flower_task(flower, job.id or "", "SUCCESS"), "attempt 2")
        revoked = wait_for(lambda: _flower_task(flower, cancelled.id or "", "REVOKED"), "revoked")
    finally:
        worker.stop()
        delete_queues(producer, flaky, gate, warm)
    short = f"[job {job.id} on {flaky!r}]"
    assert (first["args"], second["args"]) == (short, short)
    assert second["result"] == "'done on attempt 2'" and second["retries"] == 1
    assert revoked["args"] == f"[job {cancelled.id} on {gate!r}]"
