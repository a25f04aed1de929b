"""JobListOptions: parsing Vendure's camelCase options, and their meaning evaluated in Python."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from adapter.conditions import list_jobs, matches, sort_jobs
from adapter.errors import InvalidListOptionsError, JobQueueError
from adapter.job import Job, JobState
from adapter.listing import (
    DEFAULT_TAKE,
    MAX_TAKE,
    DateOperators,
    JobFilter,
    JobListOptions,
    LogicalOperator,
    SortField,
    SortOrder,
    StringOperators,
    page_bounds,
    parse_list_options,
)
from tests.factories import at, make_job, make_varied_jobs

ALL = ["v-pending", "v-running", "e-done", "e-failed", "i-cancelled", "r-retrying", "r-done"]
SETTLED = ["e-done", "e-failed", "i-cancelled", "r-done"]
UNSETTLED = ["v-pending", "v-running", "r-retrying"]
STARTED = ["v-running", "e-done", "e-failed", "r-retrying", "r-done"]


def found(filter: dict[str, Any], operator: str = "AND") -> list[str]:
    """Return the ids of the varied jobs that ``filter`` (camelCase) keeps, oldest first."""
    options = {"filter": filter, "filterOperator": operator}
    return [str(job.id) for job in list_jobs(make_varied_jobs(), options).items]


def invalid(options: Any) -> str:
    """Return the message of the InvalidListOptionsError that parsing ``options`` raises."""
    with pytest.raises(InvalidListOptionsError) as caught:
        parse_list_options(options)
    return str(caught.value)


# Parsing


def test_camel_case_dict_becomes_typed_options() -> None:
    options = parse_list_options(
        {
            "skip": 2,
            "take": 5,
            "filter": {"queueName": {"eq": "video"}, "isSettled": {"isNull": False}},
            "sort": {"createdAt": "DESC", "id": "ASC"},
            "filterOperator": "OR",
        }
    )
    assert (options.skip, options.take, options.filter_operator) == (2, 5, LogicalOperator.OR)
    assert options.filter is not None and options.filter.queue_name is not None
    assert options.filter.queue_name.eq == "video"
    assert options.filter.is_settled is not None and options.filter.is_settled.is_null is False
    assert list(options.sort.items()) == [
        (SortField.CREATED_AT, SortOrder.DESC),
        (SortField.ID, SortOrder.ASC),
    ]


def test_snake_case_dict_means_the_same_as_camel_case() -> None:
    camel = {"filter": {"settledAt": {"isNull": True}}, "sort": {"queueName": "ASC"}}
    snake = {"filter": {"settled_at": {"is_null": True}}, "sort": {"queue_name": "ASC"}}
    assert parse_list_options(camel) == parse_list_options(snake)


def test_nested_groups_and_keyword_operators_use_vendure_names() -> None:
    options = parse_list_options(
        {"filter": {"_or": [{"id": {"in": ["a", 7]}}, {"_and": [{"state": {"notIn": []}}]}]}}
    )
    assert options.filter is not None and options.filter.or_ is not None
    first, second = options.filter.or_
    assert first.id is not None and first.id.in_ == ["a", "7"]
    assert second.and_ is not None and second.and_[0].state == StringOperators(not_in=[])


def test_typed_options_are_returned_as_they_are() -> None:
    options = JobListOptions(take=3, filter=JobFilter(queue_name=StringOperators(eq="video")))
    assert parse_list_options(options) is options


def test_no_options_mean_defaults() -> None:
    options = parse_list_options(None)
    assert options == JobListOptions()
    assert (options.filter, options.sort, options.filter_operator) == (None, {}, "AND")


def test_dates_accept_iso_strings_and_naive_times_are_utc() -> None:
    options = parse_list_options(
        {"filter": {"createdAt": {"after": "2020-04-03T12:00:00+02:00", "before": "2020-04-03"}}}
    )
    assert options.filter is not None
    assert options.filter.created_at == DateOperators(
        after=datetime(2020, 4, 3, 10, tzinfo=UTC), before=datetime(2020, 4, 3, tzinfo=UTC)
    )


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (
            {"filter": {"queueName": {"startsWith": "v"}}},
            "filter.queueName.startsWith: unknown operator",
        ),
        ({"filter": {"queue": {"eq": "v"}}}, "filter.queue: unknown field"),
        (
            {"filter": {"_and": [{"state": {"like": "x"}}]}},
            "filter._and[0].state.like: unknown operator",
        ),
        ({"filter": {"_or": [{"name": {"eq": "x"}}]}}, "filter._or[0].name: unknown field"),
        (
            {"filter": {"attempts": {"between": {"start": 1, "stop": 2}}}},
            "filter.attempts.between.end: missing; "
            "filter.attempts.between.stop: unknown bound (use start and end)",
        ),
        ({"page": 1}, "page: unknown option"),
        ({"sort": {"name": "ASC"}}, "sort.name: unknown sort field"),
        (
            {"sort": {"createdAt": "down"}},
            "sort.createdAt: input should be 'ASC' or 'DESC', got 'down'",
        ),
        ({"filterOperator": "XOR"}, "filterOperator: input should be 'AND' or 'OR', got 'XOR'"),
        ({"take": -1}, "take: input should be greater than or equal to 0, got -1"),
        (
            {"filter": {"queueName": {"eq": 5}}},
            "filter.queueName.eq: input should be a valid string, got 5",
        ),
        (
            [("take", 1)],
            "options: input should be a valid dictionary or instance of JobListOptions",
        ),
    ],
)
def test_bad_options_raise_an_error_naming_the_path(options: Any, message: str) -> None:
    assert invalid(options).startswith(message)


def test_every_problem_is_named_in_one_error() -> None:
    message = invalid({"take": -1, "filter": {"id": {"like": "1"}}})
    assert message == "take: input should be greater than or equal to 0, got -1; " + (
        "filter.id.like: unknown operator"
    )


def test_bad_dates_and_regular_expressions_are_bad_values() -> None:
    assert invalid({"filter": {"createdAt": {"before": "yesterday"}}}).startswith(
        "filter.createdAt.before: input should be a valid datetime"
    )
    assert invalid({"filter": {"state": {"regex": "(unclosed"}}}).startswith(
        "filter.state.regex: not a valid regular expression: "
    )


def test_invalid_list_options_error_is_a_value_error_of_the_adapter() -> None:
    with pytest.raises(ValueError) as caught:
        parse_list_options({"filter": {"nope": {}}})
    assert isinstance(caught.value, JobQueueError)


# matches: one family at a time


def test_string_operators() -> None:
    assert found({"queueName": {"eq": "email"}}) == ["e-done", "e-failed"]
    assert found({"queueName": {"notEq": "video"}}) == ALL[2:]
    assert found({"queueName": {"in": ["video", "email"]}}) == ALL[:4]
    assert found({"queueName": {"notIn": ["video", "email"]}}) == ALL[4:]
    assert found({"state": {"regex": "ED$"}}) == SETTLED
    assert found({"queueName": {"isNull": False}}) == ALL
    assert found({"queueName": {"isNull": True}}) == []


def test_contains_trims_the_operand_and_ignores_case() -> None:
    assert found({"queueName": {"contains": " RESIZE "}}) == ["i-cancelled"]
    assert found({"queueName": {"notContains": "Daily"}}) == ALL[:5]


def test_contains_takes_percent_and_underscore_literally() -> None:
    assert found({"queueName": {"contains": "t_d"}}) == ["r-retrying"]
    assert found({"queueName": {"contains": "%"}}) == []


def test_regex_searches_anywhere_and_ignores_case() -> None:
    assert found({"queueName": {"regex": "MAIL"}}) == ["e-done", "e-failed"]
    assert found({"queueName": {"regex": "^report[._]daily$"}}) == ["r-retrying", "r-done"]


def test_in_an_empty_list_matches_nothing_and_not_in_it_everything() -> None:
    assert found({"id": {"in": []}}) == []
    assert found({"id": {"notIn": []}}) == ALL


def test_id_operators() -> None:
    assert found({"id": {"eq": "e-done"}}) == ["e-done"]
    assert found({"id": {"notEq": "e-done"}}) == [job for job in ALL if job != "e-done"]
    assert found({"id": {"in": ["r-done", "v-pending", "nope"]}}) == ["v-pending", "r-done"]
    assert found({"id": {"notIn": ALL[1:]}}) == ["v-pending"]
    assert found({"id": {"isNull": True}}) == []


def test_number_operators() -> None:
    assert found({"attempts": {"eq": 1}}) == ["v-running", "e-done", "r-retrying"]
    assert found({"attempts": {"lt": 1}}) == ["v-pending", "i-cancelled"]
    assert found({"attempts": {"lte": 1}}) == [
        job for job in ALL if job not in ("e-failed", "r-done")
    ]
    assert found({"attempts": {"gt": 1}}) == ["e-failed", "r-done"]
    assert found({"retries": {"gte": 2}}) == ["v-running", "e-failed", "r-retrying"]
    between = {"start": 12.5, "end": 40}
    assert found({"progress": {"between": between}}) == ["v-running", "i-cancelled"]
    assert found({"progress": {"isNull": True}}) == []


def test_duration_is_milliseconds_from_start_to_settlement() -> None:
    assert found({"duration": {"eq": 2000}}) == ["e-done"]
    between = {"start": 500, "end": 3000}
    assert found({"duration": {"between": between}}) == ["e-done", "e-failed", "r-done"]
    assert found({"duration": {"gt": 3000}}) == ["v-running"]
    assert found({"duration": {"eq": 0}}) == ["v-pending", "i-cancelled", "r-retrying"]


def test_date_operators() -> None:
    assert found({"createdAt": {"eq": at(10, 2).isoformat()}}) == ["e-done"]
    assert found({"createdAt": {"before": "2020-04-03T10:02:00Z"}}) == ["v-pending", "v-running"]
    assert found({"createdAt": {"after": "2020-04-03T12:04:30+02:00"}}) == ["r-retrying", "r-done"]
    between = {"start": at(10, 1).isoformat(), "end": at(10, 3).isoformat()}
    assert found({"createdAt": {"between": between}}) == ["v-running", "e-done", "e-failed"]
    assert found({"settledAt": {"isNull": True}}) == UNSETTLED
    assert found({"startedAt": {"isNull": False}}) == STARTED


def test_comparisons_with_a_missing_time_are_never_true() -> None:
    assert found({"startedAt": {"before": "2020-04-03T10:03:00Z"}}) == ["v-running", "e-done"]
    assert found({"settledAt": {"after": "2000-01-01T00:00:00Z"}}) == SETTLED
    wide = {"start": "2000-01-01", "end": "2100-01-01"}
    assert found({"startedAt": {"between": wide}}) == STARTED


def test_boolean_operators() -> None:
    assert found({"isSettled": {"eq": True}}) == SETTLED
    assert found({"isSettled": {"eq": False}}) == UNSETTLED
    assert found({"isSettled": {"isNull": False}}) == ALL


def test_datetimes_in_other_zones_compare_by_instant() -> None:
    job = make_job(created_at=datetime(2020, 4, 3, 12, 0, tzinfo=timezone(timedelta(hours=2))))
    filter = JobFilter(created_at=DateOperators(eq=datetime(2020, 4, 3, 10, 0, tzinfo=UTC)))
    assert matches(job, filter, LogicalOperator.AND)


# matches: combining conditions


def test_conditions_of_the_top_level_combine_with_and_by_default() -> None:
    assert found({"queueName": {"eq": "video"}, "progress": {"gt": 0}}) == ["v-running"]
    assert found({"attempts": {"gte": 1, "lte": 1}}) == ["v-running", "e-done", "r-retrying"]


def test_filter_operator_or_combines_every_top_level_condition_with_or() -> None:
    filter = {"queueName": {"eq": "video"}, "isSettled": {"eq": True}}
    assert found(filter, "OR") == [job for job in ALL if job != "r-retrying"]
    assert found({"attempts": {"gt": 2, "lt": 1}}, "OR") == ["v-pending", "e-failed", "i-cancelled"]


def test_or_group_matches_any_member_and_group_all() -> None:
    either = [{"queueName": {"eq": "email"}}, {"attempts": {"gt": 1}}]
    assert found({"_or": either}) == ["e-done", "e-failed", "r-done"]
    assert found({"_and": either}) == ["e-failed"]


def test_groups_combine_with_the_top_level_conditions() -> None:
    email_or_one_retry = [{"queueName": {"eq": "email"}}, {"retries": {"eq": 1}}]
    filter = {"state": {"eq": "COMPLETED"}, "_or": email_or_one_retry}
    assert found(filter) == ["e-done", "r-done"]
    assert found(filter, "OR") == SETTLED


def test_groups_nest() -> None:
    video_or_email = {"_or": [{"queueName": {"eq": "video"}}, {"queueName": {"eq": "email"}}]}
    running = {"_and": [{"startedAt": {"isNull": False}}, {"isSettled": {"eq": False}}]}
    assert found({"_and": [video_or_email, running]}) == ["v-running"]
    either = [{"_and": [video_or_email, running]}, {"id": {"eq": "r-done"}}]
    assert found({"_or": either}) == ["v-running", "r-done"]


def test_fields_of_one_member_of_an_or_group_combine_with_or_as_in_vendure() -> None:
    assert found({"_or": [{"queueName": {"eq": "video"}, "state": {"eq": "FAILED"}}]}) == [
        "v-pending",
        "v-running",
        "e-failed",
    ]


def test_empty_filters_and_groups_match_every_job() -> None:
    assert found({}) == ALL
    assert found({}, "OR") == ALL
    assert found({"_and": [], "_or": [{"_and": []}]}, "OR") == ALL
    assert found({"queueName": None, "_or": [{}]}) == ALL
    assert matches(make_job(), None, LogicalOperator.OR)


# Sorting and pages


def sorted_ids(sort: dict[SortField, SortOrder], jobs: list[Job] | None = None) -> list[str]:
    """Return the ids of ``jobs`` (default: the varied jobs) sorted by ``sort``."""
    return [str(job.id) for job in sort_jobs(jobs or make_varied_jobs(), sort)]


def test_no_sort_means_oldest_first_then_by_id() -> None:
    twins = [make_job(id=name, created_at=at(9, 0)) for name in ("b", "c", "a")]
    assert sorted_ids({}, [*make_varied_jobs(), *twins]) == ["a", "b", "c", *ALL]


def test_sort_keys_apply_in_order_with_id_as_tie_breaker() -> None:
    sort = {SortField.QUEUE_NAME: SortOrder.DESC, SortField.PROGRESS: SortOrder.ASC}
    assert sorted_ids(sort) == [
        "v-pending",
        "v-running",
        "r-retrying",
        "r-done",
        "e-failed",
        "e-done",
        "i-cancelled",
    ]


def test_missing_times_sort_first_ascending_and_last_descending() -> None:
    assert sorted_ids({SortField.SETTLED_AT: SortOrder.ASC})[:3] == sorted(UNSETTLED)
    assert sorted_ids({SortField.SETTLED_AT: SortOrder.DESC}) == [
        "r-done",
        "i-cancelled",
        "e-failed",
        "e-done",
        "r-retrying",
        "v-pending",
        "v-running",
    ]


def test_sort_by_duration() -> None:
    assert sorted_ids({SortField.DURATION: SortOrder.DESC}) == [
        "v-running",
        "r-done",
        "e-done",
        "e-failed",
        "i-cancelled",
        "r-retrying",
        "v-pending",
    ]


def test_page_bounds_default_take_and_refuse_more_than_the_limit() -> None:
    assert page_bounds(JobListOptions()) == (0, DEFAULT_TAKE)
    assert page_bounds(JobListOptions(skip=5, take=MAX_TAKE)) == (5, MAX_TAKE)
    with pytest.raises(InvalidListOptionsError) as caught:
        page_bounds(JobListOptions(take=MAX_TAKE + 1))
    assert str(caught.value) == f"take: {MAX_TAKE + 1} is more than the limit of {MAX_TAKE}"


def test_list_jobs_counts_every_match_before_skip_and_take() -> None:
    options = {"filter": {"isSettled": {"eq": True}}, "skip": 1, "take": 2}
    page = list_jobs(make_varied_jobs(), options)
    assert ([job.id for job in page.items], page.total_items) == (["e-failed", "i-cancelled"], 4)


def test_list_jobs_of_a_state_by_enum_value() -> None:
    jobs = [make_job(state=JobState.FAILED, settled_at=at(11, 0)), make_job()]
    assert list_jobs(jobs, {"filter": {"state": {"eq": JobState.FAILED}}}).total_items == 1
