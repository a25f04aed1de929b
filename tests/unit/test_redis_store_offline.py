"""The Redis job store without a server: hash fields, index plans, URLs and connection errors."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from adapter.errors import ConfigurationError, StoreError
from adapter.job import JobState
from adapter.listing import parse_list_options
from adapter.store import open_store
from adapter.store.redis.layout import (
    IndexPlan,
    RedisKeys,
    field_text,
    from_micros,
    job_from_hash,
    job_hash,
    micros,
    plan_index,
)
from adapter.store.redis.store import RedisJobStore
from tests.factories import make_job

KEYS = RedisKeys("p")
QUEUES = ["video", "email", "a:state:PENDING"]


def plan(filter: dict[str, Any], operator: str = "AND", unstamped: bool = False) -> IndexPlan:
    """Return the plan of a query with ``filter``, over QUEUES."""
    options = parse_list_options({"filter": filter, "filterOperator": operator})
    return plan_index(options, KEYS, lambda: QUEUES, lambda: unstamped)


# Hash fields


def test_a_job_survives_its_hash_fields() -> None:
    job = make_job(
        data={"n": [1, {"x": None}]},
        state=JobState.FAILED,
        progress=12.5,
        result="partial",
        error="boom",
        attempts=2,
        retries=3,
        started_at=datetime(2020, 1, 1, 1, tzinfo=timezone(timedelta(hours=2))),
        settled_at=datetime(2020, 1, 1, 0, 0, 1, 7, tzinfo=UTC),
    )
    fields = job_hash(job, datetime(2021, 1, 1, tzinfo=UTC))
    assert job_from_hash(fields) == job
    assert fields["settled_at"] == str(micros(datetime(2020, 1, 1, 0, 0, 1, 7, tzinfo=UTC)))


@pytest.mark.parametrize("result", [None, {"url": "/a.pdf"}, 0])
def test_each_hash_field_is_written_as_field_text_writes_it(result: Any) -> None:
    job = make_job(
        data={"n": "caf\u00e9"},
        state=JobState.RUNNING,
        progress=3,
        result=result,
        error="boom",
        started_at=datetime(2020, 1, 1, tzinfo=UTC),
        ready_at=datetime(2020, 1, 2, tzinfo=UTC),
        priority=4,
        unique_key="key",
        timeout=2,
        retried_from="other",
    )
    updated_at = datetime(2021, 1, 1, tzinfo=UTC)
    fields = job_hash(job, updated_at)
    assert fields == {
        name: field_text(name, updated_at if name == "updated_at" else getattr(job, name))
        for name in fields
    }
    assert set(fields) >= {"ready_at", "unique_key", "timeout", "retried_from", "error"}


def test_unset_fields_are_left_out_of_the_hash() -> None:
    fields = job_hash(make_job(), datetime(2021, 1, 1, tzinfo=UTC))
    assert not {"error", "started_at", "settled_at"} & set(fields)


def test_times_are_exact_microseconds_and_naive_ones_are_utc() -> None:
    moment = datetime(1969, 12, 31, 23, 59, 59, 999_999, tzinfo=UTC)
    assert micros(moment) == -1
    assert from_micros(micros(moment)) == moment
    assert micros(datetime(1970, 1, 1, 0, 0, 1)) == 1_000_000


# Index plans


def test_no_filter_pages_the_index_of_every_job() -> None:
    assert plan({}) == IndexPlan([KEYS.all], exact=True)


def test_queue_and_state_equality_pages_one_index_without_asking_for_queue_names() -> None:
    options = parse_list_options({"filter": {"queueName": {"eq": "v"}, "state": {"eq": "RUNNING"}}})

    def no_lookup() -> list[str]:
        raise AssertionError("queue names were looked up")

    found = plan_index(options, KEYS, no_lookup, lambda: False)
    assert found == IndexPlan([KEYS.state_queue("RUNNING", "v")], exact=True)


def test_other_queue_operators_are_tested_against_the_known_queue_names() -> None:
    assert plan({"queueName": {"contains": "E"}}) == IndexPlan(
        [KEYS.queue("a:state:PENDING"), KEYS.queue("email"), KEYS.queue("video")], exact=True
    )
    assert plan({"queueName": {"regex": "^v", "notIn": ["video"]}}).keys == []


def test_a_state_that_is_no_state_names_no_index() -> None:
    assert plan({"state": {"in": ["PENDING:queue:a", "BOGUS"]}}).keys == []


def test_is_settled_maps_to_the_settled_states() -> None:
    settled = [KEYS.state(state) for state in ("COMPLETED", "FAILED", "CANCELLED")]
    assert plan({"isSettled": {"eq": True}}) == IndexPlan(settled, exact=True)
    both = plan(
        {"isSettled": {"eq": False}, "state": {"notEq": "RUNNING"}, "queueName": {"eq": "v"}}
    )
    assert both == IndexPlan(
        [KEYS.state_queue(state, "v") for state in ("PENDING", "RETRYING")], exact=True
    )


def test_is_settled_is_not_exact_once_a_settled_state_lacks_its_time() -> None:
    found = plan({"isSettled": {"eq": False}}, unstamped=True)
    assert not found.exact
    assert KEYS.state("COMPLETED") in found.keys and KEYS.state("PENDING") in found.keys


def test_other_conditions_narrow_but_leave_the_rest_to_python() -> None:
    assert plan({"queueName": {"eq": "v"}, "progress": {"gt": 1}}) == IndexPlan(
        [KEYS.queue("v")], exact=False
    )
    nested = plan({"state": {"eq": "FAILED"}, "_or": [{"queueName": {"eq": "v"}}]})
    assert nested == IndexPlan([KEYS.state("FAILED")], exact=False)


def test_or_of_several_conditions_reads_every_job() -> None:
    assert plan({"queueName": {"eq": "v"}, "state": {"eq": "FAILED"}}, "OR") == IndexPlan(
        [KEYS.all], exact=False
    )
    assert plan({"queueName": {"eq": "v"}}, "OR") == IndexPlan([KEYS.queue("v")], exact=True)


# URLs and errors


def test_open_store_opens_a_redis_store_for_redis_and_rediss_urls() -> None:
    assert isinstance(open_store("redis://127.0.0.1:6379/0"), RedisJobStore)
    assert isinstance(open_store("rediss://127.0.0.1:6380/0"), RedisJobStore)


def test_malformed_url_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match=r"^malformed job store URL "):
        RedisJobStore("redis://127.0.0.1:notaport/0")


def test_unreachable_server_is_a_store_error_without_the_password() -> None:
    unreachable = RedisJobStore("redis://user:s3cret@127.0.0.1:1/0")
    with pytest.raises(StoreError) as caught:
        unreachable.get("anything")
    assert str(caught.value).startswith("job store redis://user:***@127.0.0.1:1/0 failed: ")
    assert "s3cret" not in str(caught.value)
