"""The ``jobqueue`` console script, run as a subprocess against each broker."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from adapter import CeleryJobQueueStrategy, Job, JobState
from adapter.celery.routing import celery_queue
from adapter.dead_letter import DeadLetter
from adapter.job import FIELD_RANGES, MAX_QUEUE_NAME_LENGTH
from tests.integration.conftest import ROOT, WorkerProcess
from tests.private_brokers import free_port
from tests.support import delete_queues, messages_waiting, unique_queue, wait_job

#: The console script installed beside this interpreter (the project's .venv).
JOBQUEUE = str(Path(sys.executable).parent / "jobqueue")


@pytest.fixture
def cli(
    broker_url: str, store_url: str, data_dir: Path
) -> Callable[..., subprocess.CompletedProcess[str]]:
    """``cli(*args)`` runs the console script with this test's broker and store."""
    env = {
        **os.environ,
        "ADAPTER_BROKER_URL": broker_url,
        "ADAPTER_STORE_URL": store_url,
        "ADAPTER_DATA_DIR": str(data_dir),
        "PYTHONPATH": str(ROOT),
    }

    def run(*args: str, **extra_env: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [JOBQUEUE, *args],
            env={**env, **extra_env},
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    return run


def test_operator_commands_add_list_show_cancel_clean(
    cli: Callable[..., subprocess.CompletedProcess[str]], producer: CeleryJobQueueStrategy
) -> None:
    queue = unique_queue("cli")
    try:
        added = cli("add", queue, '{"to": "ada@example.com"}', "--retries", "2", "--json")
        assert added.returncode == 0, added.stderr
        job = json.loads(added.stdout)
        assert (job["queueName"], job["state"], job["retries"]) == (queue, "PENDING", 2)

        listed = cli("list", "--queue", queue, "--json")
        assert listed.returncode == 0 and json.loads(listed.stdout)["totalItems"] == 1
        table = cli("list", "--queue", queue, "--state", "pending")
        assert job["id"] in table.stdout and "1 of 1 job(s)" in table.stdout

        shown = cli("show", job["id"])
        assert shown.returncode == 0 and '"ada@example.com"' in shown.stdout

        cancelled = cli("cancel", job["id"])
        assert (cancelled.returncode, cancelled.stdout.strip()) == (0, f"cancelled job {job['id']}")
        again = cli("cancel", job["id"])
        assert again.returncode == 1 and "already CANCELLED; nothing changed" in again.stdout

        kept = cli("clean", "--queue", queue, "--older-than", "1h")
        assert kept.stdout.strip() == "removed 0 settled job(s)"
        cleaned = cli("clean", "--queue", queue)
        assert cleaned.stdout.strip() == "removed 1 settled job(s)"
        assert producer.find_one(job["id"]) is None
    finally:
        delete_queues(producer, queue)


def test_dead_letters_are_listed_and_reap_hands_back_a_silent_job(
    cli: Callable[..., subprocess.CompletedProcess[str]], producer: CeleryJobQueueStrategy
) -> None:
    queue = unique_queue("reap")
    letter = DeadLetter(queue=celery_queue(queue), task_id="t-1", reason="unknown task 'evil'")
    producer.store.record_dead_letter(letter)
    job = producer.add(Job(queue_name=queue, data=None))
    assert producer.store.claim(job) is not None  # as if a worker took it, then died
    try:
        listed = cli("dead-letters", "--json")
        table = cli("dead-letters")
        time.sleep(1.5)  # longer than the heartbeat timeout below: the job is silent
        reaped = cli("reap", ADAPTER_HEARTBEAT_INTERVAL="0.5", ADAPTER_HEARTBEAT_TIMEOUT="1")
        waiting = messages_waiting(producer, queue)
    finally:
        delete_queues(producer, queue)
    assert listed.returncode == 0, listed.stderr
    assert json.loads(listed.stdout)[0] == letter.model_dump(mode="json")
    assert "unknown task 'evil'" in table.stdout and "t-1" in table.stdout
    assert reaped.returncode == 0, reaped.stderr
    assert f"handed back job {job.id} on {queue}" in reaped.stdout
    found = producer.find_one(job.id or "")
    assert found is not None and found.state == JobState.RETRYING
    assert "its worker was lost (no heartbeat for 1s)" in str(found.error)
    assert waiting == 2  # the message of add, and the one reap published


def test_retry_reruns_a_cancelled_job_and_show_links_both_ways(
    cli: Callable[..., subprocess.CompletedProcess[str]], producer: CeleryJobQueueStrategy
) -> None:
    queue = unique_queue("retry")
    jobs = [producer.add(Job(queue_name=queue, data=n)) for n in range(3)]
    for job in jobs:
        producer.cancel_job(job.id or "")
    try:
        one = cli("retry", jobs[0].id or "", "--json")
        rest = cli("retry", "--queue", queue, "--state", "cancelled")
        again = cli("retry", "--queue", queue, "--state", "cancelled")
        pending = cli("retry", json.loads(one.stdout)["id"])
        shown = cli("show", jobs[0].id or "", "--json")
    finally:
        delete_queues(producer, queue)
    assert one.returncode == 0, one.stderr
    rerun = json.loads(one.stdout)
    assert (rerun["retriedFrom"], rerun["state"], rerun["data"]) == (jobs[0].id, "PENDING", 0)
    assert rest.stdout.strip() == "re-ran 2 job(s) as new jobs"  # jobs[0] already has its re-run
    assert again.stdout.strip() == "re-ran 0 job(s) as new jobs"
    assert pending.returncode == 1
    assert "is PENDING; only a FAILED or CANCELLED job can be retried" in pending.stderr
    assert json.loads(shown.stdout)["retriesOf"] == [rerun["id"]]


def test_errors_print_one_line_and_exit_non_zero(
    cli: Callable[..., subprocess.CompletedProcess[str]],
) -> None:
    cases = [
        (("show", "no-such-job"), "jobqueue: no job with id no-such-job"),
        (("add", "bad name", "{}"), "jobqueue: queue name 'bad name' is malformed"),
        (("add", "q", "{oops"), "jobqueue: job data is not valid JSON"),
        (("clean", "--older-than", "soon"), "jobqueue: not a duration: 'soon'"),
        (("list", "--sort", "colour:asc"), "jobqueue: "),
    ]
    for args, message in cases:
        result = cli(*args)
        assert result.returncode == 1, (args, result.stdout, result.stderr)
        assert result.stderr.startswith(message), (args, result.stderr)
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr


def test_out_of_range_adds_and_usage_errors_print_one_line_and_add_nothing(
    cli: Callable[..., subprocess.CompletedProcess[str]], producer: CeleryJobQueueStrategy
) -> None:
    queue = unique_queue("cli-range")
    retries = FIELD_RANGES["retries"]
    cases = [
        (
            ("add", queue, "{}", "--retries", "18446744073709551616"),
            1,
            f"jobqueue: invalid job: retries is 18446744073709551616; it must be {retries}\n",
        ),
        (
            ("add", queue, "{}", "--retries", "-1"),
            1,
            f"jobqueue: invalid job: retries is -1; it must be {retries}\n",
        ),
        (
            ("add", "q" * 10_240, "{}"),
            1,
            "jobqueue: queue name is 10240 characters long; "
            f"the limit is {MAX_QUEUE_NAME_LENGTH}\n",
        ),
        (
            ("add", queue, "{}", "--retries", "many"),
            2,
            "jobqueue add: argument --retries: invalid int value: 'many' "
            "(see jobqueue add --help)\n",
        ),
        (("add", queue), 2, "jobqueue add: the following arguments are required: data "),
    ]
    try:
        for args, code, message in cases:
            result = cli(*args)
            assert result.returncode == code, (args[:4], result.stdout, result.stderr)
            assert result.stderr.startswith(message), (args[:4], result.stderr)
            assert len(result.stderr.strip().splitlines()) == 1, result.stderr
            assert result.stdout == ""
        assert messages_waiting(producer, queue) == 0
        assert producer.find_many({"filter": {"queueName": {"eq": queue}}}).total_items == 0
    finally:
        delete_queues(producer, queue)


def test_watch_follows_a_job_to_completion_and_exits_with_its_state(
    cli: Callable[..., subprocess.CompletedProcess[str]],
    producer: CeleryJobQueueStrategy,
    make_worker: Callable[..., WorkerProcess],
) -> None:
    queue = unique_queue("watch")
    worker = make_worker(f"{queue}=slow", "-P", "threads", "-c", "2")
    try:
        added = json.loads(cli("add", queue, "null", "--json").stdout)
        worker.start()
        wait_job(producer, added["id"], lambda job: job.state == JobState.RUNNING, "running")
        # The slow process blocks its first attempt; cancel it so watch sees it settle.
        producer.cancel_job(added["id"])
        watched = cli("watch", added["id"], "--interval", "0.05")
    finally:
        worker.stop()
        delete_queues(producer, queue)
    assert watched.returncode == 3, watched.stderr
    assert watched.stdout.strip().splitlines()[-1] == "CANCELLED: None"


def test_queues_shows_counts_by_state_and_check_reports_the_broker(
    cli: Callable[..., subprocess.CompletedProcess[str]],
    producer: CeleryJobQueueStrategy,
    broker_url: str,
) -> None:
    queue = unique_queue("counts")
    try:
        for data in ("a", "b"):
            cli("add", queue, json.dumps(data))
        job = json.loads(cli("add", queue, "null", "--json").stdout)
        cli("cancel", job["id"])
        shown = cli("queues", "--json")
        assert shown.returncode == 0, shown.stderr
        states = json.loads(shown.stdout)[queue]["states"]
        assert (states["PENDING"], states["CANCELLED"], states["COMPLETED"]) == (2, 1, 0)
        table = cli("queues").stdout
        assert any(line.startswith(queue) for line in table.splitlines())
    finally:
        delete_queues(producer, queue)
    checked = cli("check")
    assert checked.stdout.startswith("broker ") and "guest:guest" not in checked.stdout
    if broker_url.startswith("filesystem://"):
        assert checked.returncode == 1 and "WARNING broker_url" in checked.stdout
    else:
        assert (checked.returncode, checked.stdout.splitlines()[-1]) == (0, "0 finding(s)")


@pytest.mark.timeout(240)  # the demo itself may take up to 180 s
def test_demo_runs_every_example_job_to_a_summary(tmp_path: Path) -> None:
    env = {key: value for key, value in os.environ.items() if not key.startswith("ADAPTER_")}
    result = subprocess.run(
        [JOBQUEUE, "demo", "--data-dir", str(tmp_path)],
        env=env, cwd=ROOT, capture_output=True, text=True, timeout=180, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "Summary: COMPLETED 6, FAILED 1" in result.stdout
    assert "attempt 3/3  sent to flaky@example.com" in result.stdout
    assert (tmp_path / "jobs.sqlite3").exists()


def test_add_with_the_store_unreachable_exits_non_zero_naming_it(
    cli: Callable[..., subprocess.CompletedProcess[str]],
) -> None:
    down = f"redis://:s3cret@127.0.0.1:{free_port()}/0"  # nothing listens there
    result = cli("add", unique_queue("cli-down"), "{}", ADAPTER_STORE_URL=down)
    assert result.returncode == 1, result.stdout
    assert result.stdout == ""  # never "added job"
    assert result.stderr.startswith("jobqueue: could not record 1 added job(s) in the job store")
    assert "the worker that runs each records it" in result.stderr
    assert "s3cret" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr


def test_watch_of_a_job_nobody_runs_gives_up_after_its_timeout(
    cli: Callable[..., subprocess.CompletedProcess[str]], producer: CeleryJobQueueStrategy
) -> None:
    queue = unique_queue("cli-nobody")
    job = producer.add(Job(queue_name=queue, data=None))
    producer.flush()
    try:
        result = cli("watch", job.id or "", "--timeout", "1", "--interval", "0.1")
    finally:
        delete_queues(producer, queue)
    assert result.returncode == 4, (result.stdout, result.stderr)
    assert result.stdout.splitlines()[-1] == "gave up after 1s: the job is PENDING"


@pytest.mark.parametrize("broker_url", ["redis"], indirect=True)
def test_pause_resume_and_limit_are_stored_and_shown_by_queues(
    cli: Callable[..., subprocess.CompletedProcess[str]], producer: CeleryJobQueueStrategy
) -> None:
    queue = unique_queue("steer")
    paused = cli("pause", queue)
    assert (paused.returncode, paused.stdout) == (0, f"{queue}: paused\n"), paused.stderr
    limited = cli("limit", queue, "--concurrency", "2", "--rate", "100/m", "--json")
    assert json.loads(limited.stdout)[queue] == {
        "paused": True,
        "concurrency": 2,
        "rateLimit": "100/m",
    }
    assert producer.queue_controls()[queue].paused
    shown = json.loads(cli("queues", "--json").stdout)[queue]
    assert (shown["paused"], shown["concurrency"], shown["rateLimit"]) == (True, 2, "100/m")
    assert "paused, concurrency 2, rate 100/m" in cli("queues").stdout
    bad = cli("limit", queue, "--rate", "5/d")
    assert bad.returncode == 1 and "rate_limit '5/d'" in bad.stderr
    assert cli("resume", queue).stdout == f"{queue}: concurrency 2, rate 100/m\n"
    cleared = cli("limit", queue, "--concurrency", "none", "--rate", "none")
    assert cleared.stdout == f"{queue}: -\n"
    assert queue not in producer.queue_controls()
