"""Timeouts without a worker: which applies, what the process is told, what is recorded."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator

import pytest
from kombu.entity import Queue
from kombu.message import Message

from adapter import CeleryJobQueueStrategy
from adapter.backoff import constant_backoff
from adapter.celery.envelope import TIMEOUT_HEADER
from adapter.celery.routing import celery_queue
from adapter.deadlines import Deadlines, Timeouts, check_timeout
from adapter.errors import ConfigurationError, JobCancelledError, JobTimeLimitError
from adapter.job import Job, JobState
from adapter.lifecycle import Lifecycle, Liveness, OutcomeKind
from adapter.running import RunningJobs
from adapter.service import JobQueueService
from adapter.settings import AdapterSettings, environment_settings
from adapter.store.memory import MemoryJobStore
from tests.support import memory_strategy, wait_for
from tests.unit.test_buffer import RecordingStrategy


def claimed_on(lifecycle: Lifecycle, retries: int = 0) -> Job:
    job = lifecycle.claim(Job(id=uuid.uuid4().hex, queue_name="timed", retries=retries))
    assert job is not None
    return job


@pytest.fixture
def lifecycle() -> Lifecycle:
    store = MemoryJobStore()
    return Lifecycle(store, Liveness(), constant_backoff(0), RunningJobs(store))


@pytest.mark.parametrize("bad", [0, -1, "5", True, float("nan"), float("inf"), [1]])
def test_a_timeout_that_is_not_a_positive_number_is_refused_naming_it(bad: object) -> None:
    refused = r"^timeout must be a number of seconds > 0 and at most 31536000, not "
    with pytest.raises(ValueError, match=refused):
        check_timeout(bad)


def test_the_jobs_own_timeout_wins_then_its_queues_then_the_default() -> None:
    timeouts = Timeouts(default=30.0, grace=5.0)
    timeouts.set_queue("mail", 10)
    assert timeouts.resolve("mail", 2) == 2.0
    assert timeouts.resolve("mail", None) == 10.0
    assert timeouts.resolve("mail", "junk") == 10.0  # a foreign producer's bad header
    assert timeouts.resolve("other", None) == 30.0
    timeouts.set_queue("mail", None)
    assert timeouts.resolve("mail", None) == 30.0
    assert Timeouts(default=None, grace=5.0).resolve("mail", None) is None
    with pytest.raises(ValueError, match="timeout of queue 'mail' must be"):
        timeouts.set_queue("mail", 0)


def test_deadlines_are_overdue_once_each() -> None:
    deadlines = Deadlines()
    deadlines.add("a", 1.0, now=100.0)
    deadlines.add("b", None, now=100.0)
    deadlines.add("c", 5.0, now=100.0)
    assert deadlines.overdue(100.5) == []
    assert deadlines.overdue(101.0) == [("a", 1.0)]
    assert deadlines.overdue(200.0) == [("c", 5.0)]
    assert deadlines.overdue(300.0) == []


def test_a_timed_out_job_raises_the_timeout_where_it_checks_for_cancellation() -> None:
    job = Job(id="j", queue_name="q")
    job.raise_if_cancelled()
    job.time_out(JobTimeLimitError("timed out after 3 s"))
    with pytest.raises(JobTimeLimitError, match="timed out after 3 s"):
        job.raise_if_cancelled()
    job.cancel()
    with pytest.raises(JobCancelledError):  # a cancel says more than a timeout
        job.raise_if_cancelled()


def test_a_process_told_of_its_timeout_fails_the_attempt_with_it(lifecycle: Lifecycle) -> None:
    def obeys(job: Job) -> str:
        while True:
            job.raise_if_cancelled()
            time.sleep(0.01)

    outcome = lifecycle.attempt(claimed_on(lifecycle), obeys, timeout=0.2)
    assert outcome.kind == OutcomeKind.FAILED and outcome.job is not None
    assert (outcome.job.state, outcome.job.error) == (JobState.FAILED, "timed out after 0.2 s")


def test_a_process_returning_after_its_timeout_still_fails_and_retries(
    lifecycle: Lifecycle,
) -> None:
    def late(job: Job) -> str:
        wait_for(lambda: job.timed_out, "the timeout notice")
        return "too late"

    outcome = lifecycle.attempt(claimed_on(lifecycle, retries=1), late, timeout=0.2)
    assert outcome.kind == OutcomeKind.RETRY and outcome.job is not None
    assert (outcome.job.state, outcome.job.error) == (JobState.RETRYING, "timed out after 0.2 s")


def test_an_attempt_within_its_timeout_completes(lifecycle: Lifecycle) -> None:
    outcome = lifecycle.attempt(claimed_on(lifecycle), lambda job: "quick", timeout=60)
    assert outcome.kind == OutcomeKind.COMPLETED


def test_an_attempt_recorded_as_stopped_records_nothing_when_its_process_ends(
    lifecycle: Lifecycle,
) -> None:
    job = claimed_on(lifecycle)
    release = threading.Event()
    outcomes = []
    runner = threading.Thread(
        target=lambda: outcomes.append(lifecycle.attempt(job, lambda j: release.wait(30)))
    )
    runner.start()
    stopped = lifecycle.stopped(
        str(job.id), JobTimeLimitError("timed out after 1 s"), claim_waiting=False
    )
    release.set()
    runner.join(30)
    assert stopped is not None and stopped.kind == OutcomeKind.FAILED
    assert outcomes[0].kind == OutcomeKind.SETTLED_ELSEWHERE
    stored = lifecycle.store.get(str(job.id))
    assert stored is not None
    assert (stored.state, stored.error) == (JobState.FAILED, "timed out after 1 s")
    # A job no longer running is not stopped again.
    assert lifecycle.stopped(str(job.id), JobTimeLimitError("x"), claim_waiting=False) is None


def test_the_timeout_settings_are_read_and_checked() -> None:
    assert (AdapterSettings().job_timeout, AdapterSettings().stop_grace) == (None, 5.0)
    found = AdapterSettings.from_conf(
        environment_settings({"ADAPTER_JOB_TIMEOUT": "90", "ADAPTER_STOP_GRACE": "2.5"})
    )
    assert (found.job_timeout, found.stop_grace) == (90.0, 2.5)
    with pytest.raises(ConfigurationError, match="ADAPTER_STOP_GRACE"):
        environment_settings({"ADAPTER_STOP_GRACE": "0"})


@pytest.fixture
def strategy() -> Iterator[CeleryJobQueueStrategy]:
    with memory_strategy("timeouts") as made:
        yield made


def taken_message(strategy: CeleryJobQueueStrategy, queue_name: str) -> Message:
    name = celery_queue(queue_name)
    with strategy.app.connection_for_read() as connection:
        message = Queue(name, routing_key=name)(connection).get(no_ack=True)  # type: ignore[no-untyped-call]
    assert isinstance(message, Message)
    return message


def test_the_service_gives_a_queue_and_a_job_their_timeouts(
    strategy: CeleryJobQueueStrategy,
) -> None:
    service = JobQueueService(strategy)
    mail = service.create_queue(f"mail-{uuid.uuid4().hex[:8]}", lambda job: None, timeout=7)
    assert strategy.timeouts.of_queue(mail.name) == 7.0
    added = mail.add({"to": "a"}, timeout=3)
    assert taken_message(strategy, mail.name).headers[TIMEOUT_HEADER] == 3.0
    assert strategy.find_one(str(added.id)) is not None


def test_a_bad_job_timeout_is_refused_naming_it_and_nothing_is_added(
    strategy: CeleryJobQueueStrategy,
) -> None:
    refused = r"^timeout must be a number of seconds > 0 and at most 31536000, not 0$"
    with pytest.raises(ValueError, match=refused):
        strategy.add(Job(queue_name="mail", data={}), timeout=0)
    strategy.flush()
    assert strategy.find_many().total_items == 0


def test_a_strategy_without_queue_timeouts_refuses_them_by_name() -> None:
    service = JobQueueService(RecordingStrategy())
    with pytest.raises(TypeError, match=r"^timeout: RecordingStrategy has no timeouts"):
        service.create_queue("mail", lambda job: None, timeout=5)


def test_a_jobs_own_timeout_is_a_field_every_strategy_is_given() -> None:
    strategy = RecordingStrategy()
    service = JobQueueService(strategy)
    queue = service.create_queue("other", lambda job: None)
    assert queue.add({}, timeout=5).timeout == 5
    assert [job.timeout for job in queue.add_many([1, 2], timeout=2.5)] == [2.5, 2.5]
    with pytest.raises(ValueError, match=r"^timeout must be a number of seconds > 0"):
        queue.add({}, timeout=0)


def test_an_abandoned_attempt_still_running_leaves_its_retry_alone(
    lifecycle: Lifecycle,
) -> None:
    first = claimed_on(lifecycle, retries=1)
    release = threading.Event()
    outcomes = []
    runner = threading.Thread(
        target=lambda: outcomes.append(lifecycle.attempt(first, lambda j: release.wait(30)))
    )
    runner.start()
    wait_for(lambda: lifecycle.store.get(str(first.id)), "the first attempt")
    stopped = lifecycle.stopped(
        str(first.id), JobTimeLimitError("timed out after 1 s"), claim_waiting=False
    )
    assert stopped is not None and stopped.kind == OutcomeKind.RETRY
    retry = lifecycle.claim(Job(id=first.id, queue_name="timed", retries=1))
    assert retry is not None

    # The retry ends while the abandoned first attempt still runs, then the first ends.
    assert lifecycle.attempt(retry, lambda job: "second").kind == OutcomeKind.COMPLETED
    release.set()
    runner.join(30)
    assert outcomes[0].kind == OutcomeKind.SETTLED_ELSEWHERE
    stored = lifecycle.store.get(str(first.id))
    assert stored is not None and (stored.state, stored.result) == (JobState.COMPLETED, "second")
