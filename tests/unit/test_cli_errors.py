"""Bad input to ``jobqueue`` prints one line, no traceback, and exits non-zero."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from celery import Celery

import adapter.cli
from adapter import CeleryJobQueueStrategy, Job
from adapter.cli import main
from adapter.job import FIELD_RANGES, MAX_QUEUE_NAME_LENGTH
from adapter.store.memory import MemoryJobStore
from tests.bad_jobs import HUGE_QUEUE_NAME


@pytest.fixture
def store(monkeypatch: pytest.MonkeyPatch) -> MemoryJobStore:
    """The memory store of the strategy every command of the test runs on (memory broker)."""
    kept = MemoryJobStore()

    def load_strategy(app: str | None) -> CeleryJobQueueStrategy:
        celery_app = Celery(f"cli-{uuid.uuid4().hex[:8]}")
        celery_app.config_from_object("celeryconfig")
        celery_app.conf.broker_url = "memory://"
        return CeleryJobQueueStrategy(celery_app, store=kept, embedded_worker=False)

    monkeypatch.setattr(adapter.cli, "load_strategy", load_strategy)
    return kept


def one_line(text: str) -> str:
    """Return ``text``'s only line; fail if it has more or none."""
    lines = text.strip().splitlines()
    assert len(lines) == 1, text
    return lines[0]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        pytest.param(
            ["add", "q", "{}", "--retries", "18446744073709551616"],
            "jobqueue: invalid job: retries is 18446744073709551616; "
            f"it must be {FIELD_RANGES['retries']}",
            id="retries-2**64",
        ),
        pytest.param(
            ["add", "q", "{}", "--retries", "-1"],
            f"jobqueue: invalid job: retries is -1; it must be {FIELD_RANGES['retries']}",
            id="retries-minus-1",
        ),
        pytest.param(
            ["add", HUGE_QUEUE_NAME, "{}"],
            f"jobqueue: queue name is 10240 characters long; the limit is {MAX_QUEUE_NAME_LENGTH}",
            id="queue-name-10kB",
        ),
    ],
)
def test_add_out_of_range_prints_the_library_error_as_one_line_and_stores_nothing(
    store: MemoryJobStore,
    capsys: pytest.CaptureFixture[str],
    argv: list[str],
    message: str,
) -> None:
    assert main(argv) == 1
    captured = capsys.readouterr()
    assert one_line(captured.err) == message
    assert captured.out == ""
    assert store.find_many({}).total_items == 0


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        pytest.param(
            ["add"],
            "jobqueue add: the following arguments are required: queue, data "
            "(see jobqueue add --help)",
            id="missing-arguments",
        ),
        pytest.param(
            ["add", "q", "{}", "--retries", "many"],
            "jobqueue add: argument --retries: invalid int value: 'many' (see jobqueue add --help)",
            id="retries-not-a-number",
        ),
        pytest.param(
            ["frobnicate"], "jobqueue: argument command: invalid choice: 'frobnicate'", id="cmd"
        ),
        pytest.param(["list", "--bogus"], "jobqueue: unrecognized arguments: --bogus", id="opt"),
        pytest.param(
            ["list", "--state", "failed", "--state", "bogus"],
            "jobqueue list: argument --state: 'bogus' is not a job state (pending, running, ",
            id="state",
        ),
        pytest.param(
            ["dead-letters", "--take", "99999999999999999999"],
            "jobqueue dead-letters: argument --take: '99999999999999999999' is not an integer "
            "from 0 to 10000",
            id="take-too-large",
        ),
        pytest.param(
            ["list", "--take", "-1"],
            "jobqueue list: argument --take: '-1' is not an integer from 0 to 1000",
            id="take-negative",
        ),
        pytest.param(
            ["watch", "some-id", "--interval", "inf"],
            "jobqueue watch: argument --interval: 'inf' is not a number of seconds",
            id="interval-infinite",
        ),
        pytest.param(
            ["worker", "app", "--health-port", "99999"],
            "jobqueue worker: argument --health-port: '99999' is not an integer from 0 to 65535",
            id="port",
        ),
    ],
)
def test_usage_error_prints_one_line_and_exits_2(
    capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    with pytest.raises(SystemExit) as exited:
        main(argv)
    assert exited.value.code == 2
    assert one_line(capsys.readouterr().err).startswith(message)


def test_purge_with_the_broker_down_prints_one_line_and_cancels_nothing(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    kept = MemoryJobStore()

    def load_strategy(app: str | None) -> CeleryJobQueueStrategy:
        celery_app = Celery(f"cli-{uuid.uuid4().hex[:8]}")
        celery_app.config_from_object("celeryconfig")
        celery_app.conf.broker_url = "amqp://guest:guest@127.0.0.1:1//"  # nothing listens
        return CeleryJobQueueStrategy(celery_app, store=kept, embedded_worker=False)

    monkeypatch.setattr(adapter.cli, "load_strategy", load_strategy)
    kept.insert(waiting := Job(id="waiting", queue_name="q"))

    assert main(["purge", "q"]) == 1
    assert one_line(capsys.readouterr().err).startswith("jobqueue: could not purge queue 'q': ")
    assert kept.get(waiting.id or "") == waiting


def test_reschedule_moves_a_delayed_job_and_refuses_one_that_started(
    store: MemoryJobStore, capsys: pytest.CaptureFixture[str]
) -> None:
    job = Job(queue_name="q", ready_at=datetime(2040, 1, 1, tzinfo=UTC))
    store.insert(job)
    assert main(["reschedule", str(job.id), "2041-02-03T04:05:06"]) == 0
    assert one_line(capsys.readouterr().out) == f"job {job.id} starts at 2041-02-03T04:05:06+00:00"
    assert main(["reschedule", str(job.id), "10m", "--json"]) == 0
    moved = store.get(str(job.id))
    assert moved is not None and moved.ready_at is not None
    assert moved.ready_at - datetime.now(UTC) < timedelta(minutes=10)
    store.cancel(str(job.id))
    capsys.readouterr()
    assert main(["reschedule", str(job.id), "10m"]) == 1
    assert "is CANCELLED: only a job that has not started" in one_line(capsys.readouterr().err)
