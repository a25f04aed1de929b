"""Job transitions exactly as Vendure's Job class makes them, plus the wire format and helpers."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from adapter.backoff import DEFAULT_BACKOFF_MS, constant_backoff, exponential_backoff
from adapter.errors import InvalidJobMessageError, InvalidQueueNameError, JobQueueError
from adapter.job import (
    MAX_QUEUE_NAME_LENGTH,
    SETTLED_STATES,
    Job,
    JobState,
    utcnow,
    validate_queue_name,
)
from tests.factories import make_job

LONG_AGO = datetime(2020, 3, 1, 10, 0, 0, tzinfo=UTC)
NOT_STARTABLE = [JobState.RUNNING, JobState.COMPLETED, JobState.FAILED, JobState.CANCELLED]


class Recorder:
    """A progress listener that records the progress it was called with."""

    def __init__(self) -> None:
        self.seen: list[float] = []

    def __call__(self, job: Job) -> None:
        self.seen.append(job.progress)


# A new job.


def test_new_job_is_pending_unattempted_and_unsettled() -> None:
    job = Job(queue_name="send-email", data={"to": "a@example.com"})
    assert job.id is None
    assert job.state == JobState.PENDING
    assert (job.retries, job.attempts, job.progress) == (0, 0, 0)
    assert job.result is None and job.error is None
    assert job.started_at is None and job.settled_at is None
    assert job.created_at.tzinfo is not None
    assert not job.is_settled


def test_name_is_an_alias_of_queue_name() -> None:
    assert make_job(queue_name="send-email").name == "send-email"


@pytest.mark.parametrize("falsy", [0, "", None])
def test_falsy_id_means_not_assigned_yet(falsy: Any) -> None:
    assert make_job(id=falsy).id is None


def test_int_id_becomes_a_string() -> None:
    assert make_job(id=42).id == "42"


def test_naive_datetimes_are_taken_as_utc() -> None:
    job = make_job(created_at=datetime(2020, 3, 1, 10, 0), started_at=datetime(2020, 3, 1, 11, 0))
    assert job.created_at == datetime(2020, 3, 1, 10, 0, tzinfo=UTC)
    assert job.started_at == datetime(2020, 3, 1, 11, 0, tzinfo=UTC)


# start()


def test_start_of_pending_job_runs_it_and_counts_an_attempt() -> None:
    job = make_job()
    job.start()
    assert job.state == JobState.RUNNING
    assert job.attempts == 1
    assert job.started_at is not None and job.started_at.tzinfo is not None


def test_start_of_retrying_job_runs_it_and_counts_another_attempt() -> None:
    job = make_job(state=JobState.RETRYING, attempts=1, retries=3, started_at=LONG_AGO)
    job.start()
    assert job.state == JobState.RUNNING
    assert job.attempts == 2
    assert job.started_at is not None and job.started_at > LONG_AGO


@pytest.mark.parametrize("state", NOT_STARTABLE)
def test_start_is_ignored_unless_pending_or_retrying(state: JobState) -> None:
    job = make_job(state=state, attempts=1, started_at=LONG_AGO)
    job.start()
    assert job.state == state
    assert job.attempts == 1
    assert job.started_at == LONG_AGO


# complete()


def test_complete_settles_with_result_and_full_progress() -> None:
    job = make_job()
    job.start()
    job.set_progress(30)
    job.complete({"sent": 3})
    assert job.state == JobState.COMPLETED
    assert job.result == {"sent": 3}
    assert job.progress == 100
    assert job.settled_at is not None
    assert job.is_settled


def test_complete_after_a_failed_attempt_clears_its_error() -> None:
    job = make_job(retries=1)
    job.start()
    job.fail("first attempt broke")
    job.start()
    job.complete("done")
    assert job.state == JobState.COMPLETED
    assert job.error is None


def test_complete_has_no_guard_even_for_a_cancelled_job() -> None:
    job = make_job()
    job.cancel()
    job.complete("late")
    assert job.state == JobState.COMPLETED
    assert job.result == "late"


# fail()


def test_fail_with_retries_left_goes_to_retrying_unsettled() -> None:
    job = make_job(retries=1)
    job.start()
    job.fail(RuntimeError("smtp down"))
    assert job.state == JobState.RETRYING
    assert job.settled_at is None
    assert not job.is_settled


def test_fail_without_retries_left_settles_as_failed() -> None:
    job = make_job(retries=0)
    job.start()
    job.fail(RuntimeError("smtp down"))
    assert job.state == JobState.FAILED
    assert job.settled_at is not None
    assert job.is_settled


def test_fail_resets_progress_to_zero() -> None:
    job = make_job(retries=1)
    job.start()
    job.set_progress(70)
    job.fail("boom")
    assert job.progress == 0


def test_fail_of_cancelled_job_without_retries_left_stays_cancelled() -> None:
    job = make_job(retries=0)
    job.start()
    job.cancel()
    job.settled_at = LONG_AGO
    job.fail(RuntimeError("interrupted"))
    assert job.state == JobState.CANCELLED
    assert job.settled_at is not None and job.settled_at > LONG_AGO
    assert job.error == "interrupted"


def test_fail_of_cancelled_job_with_retries_left_becomes_retrying() -> None:
    job = make_job(retries=2)
    job.start()
    job.cancel()
    job.fail(RuntimeError("interrupted"))
    assert job.state == JobState.RETRYING


def test_fail_records_the_message_of_an_exception() -> None:
    job = make_job()
    job.start()
    job.fail(ValueError("bad address"))
    assert job.error == "bad address"


def test_fail_records_the_type_of_an_exception_without_message() -> None:
    job = make_job()
    job.start()
    job.fail(TimeoutError())
    assert job.error == "TimeoutError"


def test_fail_records_a_string_as_it_is() -> None:
    job = make_job()
    job.start()
    job.fail("quota exceeded")
    assert job.error == "quota exceeded"


def test_fail_records_the_message_attribute_of_an_error_like_object() -> None:
    class ErrorLike:
        message = "from a message attribute"

    job = make_job()
    job.start()
    job.fail(ErrorLike())
    assert job.error == "from a message attribute"


def test_retries_two_allows_three_attempts() -> None:
    job = make_job(retries=2)
    states = []
    for _ in range(3):
        job.start()
        job.fail("boom")
        states.append(job.state)
    assert states == [JobState.RETRYING, JobState.RETRYING, JobState.FAILED]
    assert job.attempts == 3
    assert job.is_settled


# set_progress() and listeners


def test_set_progress_is_capped_at_100() -> None:
    job = make_job()
    job.set_progress(250)
    assert job.progress == 100


def test_set_progress_below_0_records_0() -> None:
    # Vendure keeps a negative percent; here progress has a range, 0 to 100, that a job
    # message must respect, or a deferred job's message would be refused by its worker.
    job = make_job()
    job.set_progress(-5)
    assert job.progress == 0


def test_set_progress_calls_every_listener_with_the_job() -> None:
    job = make_job()
    first, second = Recorder(), Recorder()
    job.on("progress", first)
    job.on("progress", second)
    job.set_progress(40)
    job.set_progress(140)
    assert first.seen == [40, 100]
    assert second.seen == [40, 100]


def test_jobs_built_from_fields_have_listeners_of_their_own() -> None:
    fields = make_job().__dict__
    first, second = Job.from_fields({**fields}), Job.from_fields({**fields})
    listener = Recorder()
    first.on("progress", listener)
    second.set_progress(10)
    first.set_progress(20)
    assert listener.seen == [20]


def test_off_stops_a_listener() -> None:
    job = make_job()
    listener = Recorder()
    job.on("progress", listener)
    job.set_progress(10)
    job.off("progress", listener)
    job.set_progress(20)
    assert listener.seen == [10]


def test_off_removes_only_the_first_registration() -> None:
    job = make_job()
    listener = Recorder()
    job.on("progress", listener)
    job.on("progress", listener)
    job.off("progress", listener)
    job.set_progress(10)
    assert listener.seen == [10]


def test_off_of_a_listener_never_registered_changes_nothing() -> None:
    job = make_job()
    listener = Recorder()
    job.on("progress", listener)
    job.off("progress", Recorder())
    job.set_progress(10)
    assert listener.seen == [10]


def test_events_other_than_progress_are_refused() -> None:
    job = make_job()
    with pytest.raises(
        ValueError, match=r"^unknown job event 'start'; the only event is 'progress'$"
    ):
        job.on("start", Recorder())


# defer() and cancel()


def test_defer_sends_running_job_back_to_pending_with_attempts_reset() -> None:
    job = make_job(retries=3)
    job.start()
    job.defer()
    assert job.state == JobState.PENDING
    assert job.attempts == 0


@pytest.mark.parametrize("state", [s for s in JobState if s != JobState.RUNNING])
def test_defer_is_ignored_unless_running(state: JobState) -> None:
    job = make_job(state=state, attempts=2)
    job.defer()
    assert job.state == state
    assert job.attempts == 2


@pytest.mark.parametrize("state", list(JobState))
def test_cancel_settles_any_job_as_cancelled(state: JobState) -> None:
    job = make_job(state=state)
    job.cancel()
    assert job.state == JobState.CANCELLED
    assert job.settled_at is not None
    assert job.is_settled


# is_settled and duration


def test_settled_states_are_completed_failed_and_cancelled() -> None:
    assert {JobState.COMPLETED, JobState.FAILED, JobState.CANCELLED} == SETTLED_STATES


def test_is_settled_needs_a_settled_state_and_a_settlement_time() -> None:
    assert not make_job(state=JobState.COMPLETED).is_settled
    assert not make_job(state=JobState.RUNNING, settled_at=LONG_AGO).is_settled
    assert make_job(state=JobState.COMPLETED, settled_at=LONG_AGO).is_settled


@pytest.mark.parametrize("state", [JobState.PENDING, JobState.RETRYING])
def test_duration_is_zero_while_pending_or_retrying(state: JobState) -> None:
    job = make_job(state=state, started_at=LONG_AGO, settled_at=LONG_AGO + timedelta(seconds=5))
    assert job.duration == 0


def test_duration_of_settled_job_is_milliseconds_from_start_to_settlement() -> None:
    job = make_job(
        state=JobState.COMPLETED,
        started_at=LONG_AGO,
        settled_at=LONG_AGO + timedelta(seconds=2, milliseconds=500),
    )
    assert job.duration == 2500


def test_duration_of_job_settled_without_starting_is_zero() -> None:
    assert make_job(state=JobState.CANCELLED, settled_at=LONG_AGO).duration == 0


def test_duration_of_running_job_counts_up_to_now() -> None:
    job = make_job(state=JobState.RUNNING, started_at=utcnow() - timedelta(hours=1))
    assert job.duration >= 3_600_000


# The wire format


def test_to_wire_uses_vendures_camel_case_keys() -> None:
    job = make_job(
        id="7",
        queue_name="send-email",
        data={"to": "a@example.com"},
        state=JobState.COMPLETED,
        progress=100,
        result={"sent": True},
        retries=2,
        attempts=1,
        created_at=LONG_AGO,
        started_at=LONG_AGO,
        settled_at=LONG_AGO,
        ready_at=LONG_AGO,
        priority=5,
        unique_key="k",
        retried_from="6",
    )
    assert job.to_wire() == {
        "id": "7",
        "queueName": "send-email",
        "data": {"to": "a@example.com"},
        "state": "COMPLETED",
        "progress": 100,
        "result": {"sent": True},
        "error": None,
        "retries": 2,
        "attempts": 1,
        "createdAt": "2020-03-01T10:00:00Z",
        "startedAt": "2020-03-01T10:00:00Z",
        "settledAt": "2020-03-01T10:00:00Z",
        "readyAt": "2020-03-01T10:00:00Z",
        "priority": 5,
        "uniqueKey": "k",
        "retriedFrom": "6",
        "timeout": None,
    }


def test_wire_round_trip_gives_an_equal_job() -> None:
    job = make_job(retries=1, data={"lines": [1, 2]})
    job.start()
    job.set_progress(12.5)
    job.fail(RuntimeError("boom"))
    assert Job.from_wire(job.to_wire()) == job


def test_from_wire_ignores_unknown_keys() -> None:
    wire = make_job(id="7").to_wire() | {"priority": 5}
    assert Job.from_wire(wire).id == "7"


@pytest.mark.parametrize(("payload", "kind"), [([1], "list"), (None, "NoneType"), ("{}", "str")])
def test_from_wire_refuses_what_is_not_an_object(payload: object, kind: str) -> None:
    with pytest.raises(InvalidJobMessageError) as caught:
        Job.from_wire(payload)
    assert str(caught.value) == f"a job message must be a JSON object, got {kind}"


def test_from_wire_refuses_a_job_without_id() -> None:
    wire = make_job().to_wire()
    del wire["id"]
    with pytest.raises(InvalidJobMessageError) as caught:
        Job.from_wire(wire)
    assert str(caught.value) == "not a valid job: it has no id"


def test_from_wire_refuses_a_job_without_queue_name() -> None:
    wire = make_job().to_wire()
    del wire["queueName"]
    with pytest.raises(InvalidJobMessageError) as caught:
        Job.from_wire(wire)
    assert str(caught.value) == "not a valid job: queueName: Field required"


def test_from_wire_refuses_an_unknown_state() -> None:
    wire = make_job().to_wire() | {"state": "PAUSED"}
    with pytest.raises(InvalidJobMessageError) as caught:
        Job.from_wire(wire)
    assert str(caught.value).startswith("not a valid job: state: Input should be 'PENDING'")


def test_invalid_job_message_error_is_a_value_error_of_the_adapter() -> None:
    with pytest.raises(InvalidJobMessageError) as caught:
        Job.from_wire([])
    assert isinstance(caught.value, ValueError)
    assert isinstance(caught.value, JobQueueError)


# Queue names


@pytest.mark.parametrize(
    "name", ["send-email", "a.b-c_d", "Q1", "9lives", "x" * MAX_QUEUE_NAME_LENGTH]
)
def test_valid_queue_name_is_returned(name: str) -> None:
    assert validate_queue_name(name) == name


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("", "queue name must be a non-empty string, got ''"),
        (None, "queue name must be a non-empty string, got None"),
        (42, "queue name must be a non-empty string, got 42"),
        (
            "x" * (MAX_QUEUE_NAME_LENGTH + 1),
            f"queue name is {MAX_QUEUE_NAME_LENGTH + 1} characters long; "
            f"the limit is {MAX_QUEUE_NAME_LENGTH}",
        ),
        (" x", "queue name ' x' is malformed"),
        ("a b", "queue name 'a b' is malformed"),
        ("é", "queue name 'é' is malformed"),
        ("-x", "queue name '-x' is malformed"),
        ("x/y", "queue name 'x/y' is malformed"),
    ],
)
def test_invalid_queue_name_is_refused(name: object, message: str) -> None:
    with pytest.raises(InvalidQueueNameError) as caught:
        validate_queue_name(name)
    assert str(caught.value).startswith(message)
    assert isinstance(caught.value, ValueError)


def test_malformed_queue_name_error_says_what_is_allowed() -> None:
    with pytest.raises(InvalidQueueNameError) as caught:
        validate_queue_name("a b")
    assert str(caught.value) == (
        "queue name 'a b' is malformed: use letters, digits and '_.-', "
        "starting with a letter or digit"
    )


# Backoff helpers


def test_constant_backoff_always_waits_the_same() -> None:
    backoff = constant_backoff(250)
    job = make_job()
    assert [backoff("q", attempts, job) for attempts in (1, 2, 10)] == [250, 250, 250]


def test_constant_backoff_defaults_to_one_second() -> None:
    assert DEFAULT_BACKOFF_MS == 1000
    assert constant_backoff()("q", 1, make_job()) == 1000


def test_exponential_backoff_doubles_from_one_second() -> None:
    backoff = exponential_backoff()
    job = make_job()
    assert [backoff("q", attempts, job) for attempts in (1, 2, 3, 4)] == [1000, 2000, 4000, 8000]


def test_exponential_backoff_is_capped() -> None:
    backoff = exponential_backoff(1000, max_ms=3000)
    job = make_job()
    assert [backoff("q", attempts, job) for attempts in (1, 2, 3, 20)] == [1000, 2000, 3000, 3000]


def test_exponential_backoff_before_any_attempt_waits_the_base() -> None:
    assert exponential_backoff(500)("q", 0, make_job()) == 500
