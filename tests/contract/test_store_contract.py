"""The job store contract, run on every store: SQLite (a file per test), PostgreSQL and Redis.

It ports Vendure's findMany spec (in-memory-job-queue-strategy.spec.ts) and adds every operator
family, nested groups, pagination, ``find_many_by_id`` and ``remove_settled``. Most answers are
also checked against ``adapter.listing.list_jobs``, the in-Python reading of the same options,
so that every store means the same thing by them.

PostgreSQL runs in a schema of its own, created for the session and dropped after it; each test
empties the table afterwards. Redis keeps its keys under a prefix of the session's own; each test
deletes every key under it afterwards (never a flush: the server is shared).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from adapter.errors import InvalidListOptionsError
from adapter.job import Job, JobState
from adapter.listing import (
    DEFAULT_TAKE,
    MAX_TAKE,
    JobFilter,
    JobList,
    JobListOptions,
    SortField,
    SortOrder,
    StringOperators,
    list_jobs,
)
from adapter.store.base import JobStore
from adapter.store.redis.store import RedisJobStore
from adapter.store.sql.store import SqlJobStore
from tests.factories import at, make_job, make_spec_jobs, make_varied_jobs
from tests.support import delete_redis_keys, postgres_schema

ALL = ["v-pending", "v-running", "e-done", "e-failed", "i-cancelled", "r-retrying", "r-done"]
SETTLED = ["e-done", "e-failed", "i-cancelled", "r-done"]
UNSETTLED = ["v-pending", "v-running", "r-retrying"]


@pytest.fixture(scope="session")
def postgres_store(postgres_url: str) -> Iterator[SqlJobStore]:
    """A store in a fresh PostgreSQL schema, dropped with everything in it after the session."""
    with postgres_schema(postgres_url, "t") as url:
        opened = SqlJobStore(url)
        yield opened
        opened.close()


@pytest.fixture(scope="session")
def redis_prefix(redis_url: str) -> Iterator[str]:
    """A key prefix no other session uses; every key under it is deleted after the session."""
    prefix = f"adapter-t-{uuid.uuid4().hex[:12]}"
    yield prefix
    delete_redis_keys(redis_url, prefix)


@pytest.fixture
def redis_store(redis_url: str, redis_prefix: str) -> Iterator[RedisJobStore]:
    """An empty Redis store under the session's prefix, emptied after the test."""
    opened = RedisJobStore(redis_url, prefix=redis_prefix)
    yield opened
    opened.close()
    delete_redis_keys(redis_url, redis_prefix)


@pytest.fixture(
    params=[
        "sqlite",
        pytest.param("postgres", marks=pytest.mark.postgres),
        pytest.param("redis", marks=pytest.mark.redis),
    ]
)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[JobStore]:
    """An empty store of each kind."""
    if request.param == "sqlite":
        opened = SqlJobStore(f"sqlite:///{tmp_path / 'jobs.sqlite3'}")
        yield opened
        opened.close()
        return
    if request.param == "redis":
        yield request.getfixturevalue("redis_store")
        return
    shared: SqlJobStore = request.getfixturevalue("postgres_store")
    yield shared
    while leftovers := shared.find_many({"take": MAX_TAKE}).items:
        for job in leftovers:
            shared.delete(str(job.id))


def stock(store: JobStore, jobs: Sequence[Job]) -> list[Job]:
    """Insert ``jobs`` in order and return them."""
    for job in jobs:
        store.insert(job)
    return list(jobs)


def ids(page: JobList) -> list[str]:
    """Return the ids of a page's jobs, in order."""
    return [str(job.id) for job in page.items]


def agreed(store: JobStore, jobs: Sequence[Job], options: dict[str, Any]) -> list[str]:
    """Return the ids ``find_many`` gives, after checking ``list_jobs`` gives the same page."""
    page = store.find_many(options)
    expected = list_jobs(jobs, options)
    assert (ids(page), page.total_items) == (ids(expected), expected.total_items)
    return ids(page)


@pytest.fixture
def spec_jobs(store: JobStore) -> list[Job]:
    """Vendure's findMany fixture, stored."""
    return stock(store, make_spec_jobs())


@pytest.fixture
def varied_jobs(store: JobStore) -> list[Job]:
    """The varied jobs of tests/factories.py, stored."""
    return stock(store, make_varied_jobs())


# Vendure's findMany spec


def test_take_and_skip(store: JobStore, spec_jobs: list[Job]) -> None:
    assert ids(store.find_many({"take": 1})) == ["video-1"]
    assert ids(store.find_many({"take": 1, "skip": 1})) == ["video-2"]
    assert ids(store.find_many({"take": 10, "skip": 2})) == ["email-1", "video-3", "email-2"]


def test_sort_created_at(store: JobStore, spec_jobs: list[Job]) -> None:
    newest_first = ["email-2", "video-3", "email-1", "video-2", "video-1"]
    assert ids(store.find_many({"sort": {"createdAt": "DESC"}})) == newest_first
    assert ids(store.find_many({"sort": {"createdAt": "ASC"}})) == newest_first[::-1]


def test_sort_id(store: JobStore, spec_jobs: list[Job]) -> None:
    descending = ["video-3", "video-2", "video-1", "email-2", "email-1"]
    assert ids(store.find_many({"sort": {"id": "DESC"}})) == descending
    assert ids(store.find_many({"sort": {"id": "ASC"}})) == descending[::-1]


def test_filter_queue_name(store: JobStore, spec_jobs: list[Job]) -> None:
    videos = ["video-1", "video-2", "video-3"]
    assert ids(store.find_many({"filter": {"queueName": {"eq": "video"}}})) == videos
    assert ids(store.find_many({"filter": {"queueName": {"contains": "vid"}}})) == videos


def test_filter_is_settled(store: JobStore, spec_jobs: list[Job]) -> None:
    video_1 = store.get("video-1")
    assert video_1 is not None
    video_1.complete()
    assert store.update(video_1)
    assert ids(store.find_many({"filter": {"isSettled": {"eq": True}}})) == ["video-1"]


def test_find_many_returns_whole_jobs_oldest_first(store: JobStore, spec_jobs: list[Job]) -> None:
    page = store.find_many()
    assert page.items == spec_jobs
    assert page.total_items == len(spec_jobs)


# Every operator family, and groups, on real data

FILTERS: list[tuple[dict[str, Any], str, list[str]]] = [
    # string
    ({"queueName": {"eq": "email"}}, "AND", ["e-done", "e-failed"]),
    ({"queueName": {"notEq": "video"}}, "AND", ALL[2:]),
    ({"queueName": {"contains": " RESIZE "}}, "AND", ["i-cancelled"]),
    ({"queueName": {"contains": "t_d"}}, "AND", ["r-retrying"]),
    ({"queueName": {"notContains": "Daily"}}, "AND", ALL[:5]),
    ({"queueName": {"in": ["video", "email"]}}, "AND", ALL[:4]),
    ({"queueName": {"notIn": ["video", "email"]}}, "AND", ALL[4:]),
    ({"queueName": {"regex": "^REPORT[._]daily$"}}, "AND", ["r-retrying", "r-done"]),
    ({"state": {"regex": "ed$"}}, "AND", SETTLED),
    ({"state": {"eq": "RUNNING"}}, "AND", ["v-running"]),
    ({"queueName": {"isNull": True}}, "AND", []),
    # id
    ({"id": {"eq": "e-done"}}, "AND", ["e-done"]),
    ({"id": {"notEq": "e-done"}}, "AND", [job for job in ALL if job != "e-done"]),
    ({"id": {"in": ["r-done", "nope", "v-pending"]}}, "AND", ["v-pending", "r-done"]),
    ({"id": {"in": []}}, "AND", []),
    ({"id": {"notIn": ALL[1:]}}, "AND", ["v-pending"]),
    ({"id": {"notIn": []}}, "AND", ALL),
    ({"id": {"isNull": False}}, "AND", ALL),
    # number
    ({"attempts": {"eq": 1}}, "AND", ["v-running", "e-done", "r-retrying"]),
    ({"attempts": {"lt": 1}}, "AND", ["v-pending", "i-cancelled"]),
    ({"attempts": {"lte": 1}}, "AND", [job for job in ALL if job not in ("e-failed", "r-done")]),
    ({"attempts": {"gt": 1}}, "AND", ["e-failed", "r-done"]),
    ({"retries": {"gte": 2}}, "AND", ["v-running", "e-failed", "r-retrying"]),
    ({"progress": {"between": {"start": 12.5, "end": 40}}}, "AND", ["v-running", "i-cancelled"]),
    ({"progress": {"eq": 12.5}}, "AND", ["i-cancelled"]),
    ({"retries": {"isNull": True}}, "AND", []),
    ({"duration": {"eq": 2000}}, "AND", ["e-done"]),
    ({"duration": {"eq": 0}}, "AND", ["v-pending", "i-cancelled", "r-retrying"]),
    (
        {"duration": {"between": {"start": 500, "end": 3000}}},
        "AND",
        ["e-done", "e-failed", "r-done"],
    ),
    ({"duration": {"gt": 3000}}, "AND", ["v-running"]),
    ({"duration": {"lte": 500, "gte": 500}}, "AND", ["e-failed"]),
    # date
    ({"createdAt": {"eq": "2020-04-03T10:02:00Z"}}, "AND", ["e-done"]),
    ({"createdAt": {"before": "2020-04-03T10:02:00Z"}}, "AND", ["v-pending", "v-running"]),
    ({"createdAt": {"after": "2020-04-03T12:04:30+02:00"}}, "AND", ["r-retrying", "r-done"]),
    (
        {"createdAt": {"between": {"start": "2020-04-03T10:01:00", "end": "2020-04-03T10:03Z"}}},
        "AND",
        ["v-running", "e-done", "e-failed"],
    ),
    ({"settledAt": {"eq": "2020-04-03T10:03:00.5Z"}}, "AND", ["e-failed"]),
    ({"settledAt": {"isNull": True}}, "AND", UNSETTLED),
    ({"startedAt": {"before": "2020-04-03T10:03:00Z"}}, "AND", ["v-running", "e-done"]),
    ({"settledAt": {"after": "2000-01-01T00:00:00Z"}}, "AND", SETTLED),
    # boolean
    ({"isSettled": {"eq": True}}, "AND", SETTLED),
    ({"isSettled": {"eq": False}}, "AND", UNSETTLED),
    ({"isSettled": {"isNull": False}}, "AND", ALL),
    # combining
    ({"queueName": {"eq": "video"}, "progress": {"gt": 0}}, "AND", ["v-running"]),
    ({"queueName": {"eq": "video"}, "isSettled": {"eq": True}}, "OR", [*ALL[:5], "r-done"]),
    ({"attempts": {"gt": 2, "lt": 1}}, "OR", ["v-pending", "e-failed", "i-cancelled"]),
    (
        {"_or": [{"queueName": {"eq": "email"}}, {"attempts": {"gt": 1}}]},
        "AND",
        ["e-done", "e-failed", "r-done"],
    ),
    ({"_and": [{"queueName": {"eq": "email"}}, {"attempts": {"gt": 1}}]}, "AND", ["e-failed"]),
    (
        {
            "state": {"eq": "COMPLETED"},
            "_or": [{"queueName": {"eq": "email"}}, {"retries": {"eq": 1}}],
        },
        "AND",
        ["e-done", "r-done"],
    ),
    (
        {
            "state": {"eq": "COMPLETED"},
            "_or": [{"queueName": {"eq": "email"}}, {"retries": {"eq": 1}}],
        },
        "OR",
        SETTLED,
    ),
    (
        {
            "_or": [
                {
                    "_and": [
                        {"_or": [{"queueName": {"eq": "video"}}, {"queueName": {"eq": "email"}}]},
                        {"startedAt": {"isNull": False}, "isSettled": {"eq": False}},
                    ]
                },
                {"id": {"eq": "r-done"}},
            ]
        },
        "AND",
        ["v-running", "r-done"],
    ),
    (
        {"_or": [{"queueName": {"eq": "video"}, "state": {"eq": "FAILED"}}]},
        "AND",
        ["v-pending", "v-running", "e-failed"],
    ),
    ({"_and": [], "_or": [{"_and": []}]}, "OR", ALL),
]


@pytest.mark.parametrize(
    ("filter", "operator", "expected"),
    FILTERS,
    ids=[
        f"{json.dumps(filter, separators=(',', ':'))}-{operator}" for filter, operator, _ in FILTERS
    ],
)
def test_filter(
    store: JobStore,
    varied_jobs: list[Job],
    filter: dict[str, Any],
    operator: str,
    expected: list[str],
) -> None:
    assert agreed(store, varied_jobs, {"filter": filter, "filterOperator": operator}) == expected


@pytest.mark.parametrize("order", ["ASC", "DESC"])
@pytest.mark.parametrize("field", [field.value for field in SortField])
def test_sort(store: JobStore, varied_jobs: list[Job], field: str, order: str) -> None:
    assert len(agreed(store, varied_jobs, {"sort": {field: order}})) == len(ALL)


def test_sort_keys_apply_in_order(store: JobStore, varied_jobs: list[Job]) -> None:
    sort = {"queueName": "DESC", "progress": "ASC"}
    assert agreed(store, varied_jobs, {"sort": sort}) == [
        "v-pending",
        "v-running",
        "r-retrying",
        "r-done",
        "e-failed",
        "e-done",
        "i-cancelled",
    ]


def test_missing_times_sort_first_ascending(store: JobStore, varied_jobs: list[Job]) -> None:
    first = ids(store.find_many({"sort": {"settledAt": "ASC"}, "take": 3}))
    assert first == ["r-retrying", "v-pending", "v-running"]
    last = ids(store.find_many({"sort": {"startedAt": "DESC"}, "skip": 5}))
    assert last == ["i-cancelled", "v-pending"]


def test_typed_options_mean_the_same_as_the_dict(store: JobStore, varied_jobs: list[Job]) -> None:
    typed = JobListOptions(
        filter=JobFilter(queue_name=StringOperators(contains="e")),
        sort={SortField.PROGRESS: SortOrder.DESC},
        take=3,
    )
    as_dict = {"filter": {"queueName": {"contains": "e"}}, "sort": {"progress": "DESC"}, "take": 3}
    assert store.find_many(typed) == store.find_many(as_dict)


# Pages


def test_total_items_counts_every_match_before_skip_and_take(
    store: JobStore, varied_jobs: list[Job]
) -> None:
    page = store.find_many({"filter": {"isSettled": {"eq": True}}, "skip": 1, "take": 2})
    assert (ids(page), page.total_items) == (["e-failed", "i-cancelled"], 4)
    assert store.find_many({"take": 0}) == JobList(items=[], total_items=len(ALL))
    assert store.find_many({"skip": 50}) == JobList(items=[], total_items=len(ALL))


def test_take_defaults_to_the_default_page_size(store: JobStore) -> None:
    stock(store, [make_job(created_at=at(9, 0, second)) for second in range(DEFAULT_TAKE + 5)])
    page = store.find_many()
    assert (len(page.items), page.total_items) == (DEFAULT_TAKE, DEFAULT_TAKE + 5)


def test_take_above_the_limit_is_refused(store: JobStore, varied_jobs: list[Job]) -> None:
    assert store.find_many({"take": MAX_TAKE}).total_items == len(ALL)
    with pytest.raises(InvalidListOptionsError, match=r"^take: "):
        store.find_many({"take": MAX_TAKE + 1})


def test_unknown_operator_is_refused(store: JobStore) -> None:
    with pytest.raises(InvalidListOptionsError, match=r"^filter\.queueName\.startsWith: unknown"):
        store.find_many({"filter": {"queueName": {"startsWith": "v"}}})


# insert_many (the batches ``add`` writes behind its publishes)


def test_insert_many_stores_new_jobs_and_leaves_stored_ones_alone(store: JobStore) -> None:
    ran_first = make_job(data="as published")
    store.insert(ran_first)
    assert store.claim(ran_first) is not None  # its worker got there before the batch
    fresh = [make_job(data=n) for n in range(3)]
    store.insert_many([ran_first.model_copy(update={"data": "late copy"}), *fresh])
    kept = store.get(str(ran_first.id))
    assert kept is not None
    assert (kept.state, kept.attempts, kept.data) == (JobState.RUNNING, 1, "as published")
    stored = store.find_many_by_id([str(job.id) for job in fresh])
    assert [(job.data, job.state) for job in stored] == [(n, JobState.PENDING) for n in range(3)]
    store.insert_many([])
    assert store.find_many().total_items == 4
    pending = store.find_many({"filter": {"state": {"eq": "PENDING"}}, "sort": {"id": "ASC"}})
    assert ids(pending) == sorted(str(job.id) for job in fresh)
    assert store.queue_counts()["test-queue"][JobState.PENDING] == 3


# find_many_by_id


def test_find_many_by_id_keeps_the_given_order(store: JobStore, varied_jobs: list[Job]) -> None:
    found = store.find_many_by_id(["r-done", "v-pending", "e-failed"])
    assert found == [varied_jobs[6], varied_jobs[0], varied_jobs[3]]


def test_find_many_by_id_drops_unknown_and_repeated_ids(
    store: JobStore, varied_jobs: list[Job]
) -> None:
    assert [job.id for job in store.find_many_by_id(["nope", "e-done", "e-done", "gone"])] == [
        "e-done"
    ]
    assert store.find_many_by_id([]) == []
    assert store.find_many_by_id(["nope"]) == []


# remove_settled

UTC_PLUS_2 = timezone(timedelta(hours=2))


@pytest.mark.parametrize(
    ("queue_names", "older_than", "removed"),
    [
        (None, None, SETTLED),
        ([], None, SETTLED),
        (["email"], None, ["e-done", "e-failed"]),
        (["video"], None, []),
        (None, at(10, 4, 5), ["e-done", "e-failed"]),
        (None, at(10, 3, 0.5), ["e-done"]),
        (None, datetime(2020, 4, 3, 12, 4, 5, tzinfo=UTC_PLUS_2), ["e-done", "e-failed"]),
        (None, datetime(2020, 4, 3, 10, 4, 5), ["e-done", "e-failed"]),
        (["email", "report.daily"], at(10, 6), ["e-done", "e-failed"]),
        (["Image-Resize", "report.daily"], at(10, 7), ["i-cancelled", "r-done"]),
    ],
)
def test_remove_settled(
    store: JobStore,
    varied_jobs: list[Job],
    queue_names: list[str] | None,
    older_than: datetime | None,
    removed: list[str],
) -> None:
    assert store.remove_settled(queue_names, older_than) == len(removed)
    assert ids(store.find_many()) == [job for job in ALL if job not in removed]


def test_remove_settled_with_no_arguments_keeps_every_unsettled_job(
    store: JobStore, varied_jobs: list[Job]
) -> None:
    assert store.remove_settled() == len(SETTLED)
    assert ids(store.find_many()) == UNSETTLED
    assert store.remove_settled() == 0


def test_queue_counts_give_jobs_by_state_per_queue(store: JobStore) -> None:
    for _ in range(3):
        store.insert(make_job(queue_name="counted-a"))
    cancelled = make_job(queue_name="counted-a")
    store.insert(cancelled)
    store.cancel(cancelled.id or "")
    store.insert(make_job(queue_name="counted-b"))
    counts = store.queue_counts()
    assert {state: n for state, n in counts["counted-a"].items() if n} == {
        JobState.PENDING: 3,
        JobState.CANCELLED: 1,
    }
    assert counts["counted-b"][JobState.PENDING] == 1
    assert set(counts["counted-b"]) == set(JobState)


# Heartbeats, the reaper's query, dead letters


def running(store: JobStore, **overrides: Any) -> Job:
    """Insert a job and claim it; return the claimed job."""
    job = make_job(**overrides)
    store.insert(job)
    claimed = store.claim(job)
    assert claimed is not None
    return claimed


def test_reap_hands_back_running_jobs_that_stopped_beating(store: JobStore) -> None:
    silent, beating = running(store, retries=1), running(store)
    store.set_progress(silent.id or "", 40)
    waiting = make_job()
    store.insert(waiting)
    cutoff = datetime.now(UTC) + timedelta(milliseconds=5)
    while datetime.now(UTC) <= cutoff:
        pass
    assert store.heartbeat([beating.id or "", waiting.id or "", "no-such-job"]) == 1

    reaped = store.reap(cutoff, "worker lost")

    assert [(job.id, job.state, job.progress, job.error) for job in reaped] == [
        (silent.id, JobState.RETRYING, 0, "worker lost")
    ]
    stored = store.get(silent.id or "")
    assert stored is not None
    assert (stored.state, stored.attempts, stored.error) == (JobState.RETRYING, 1, "worker lost")
    assert store.get(beating.id or "").state == JobState.RUNNING  # type: ignore[union-attr]
    assert store.get(waiting.id or "").state == JobState.PENDING  # type: ignore[union-attr]
    assert store.reap(cutoff, "worker lost") == []  # reaped once only


def test_reap_and_heartbeat_leave_settled_jobs_alone(store: JobStore) -> None:
    job = running(store)
    store.cancel(job.id or "")
    later = datetime.now(UTC) + timedelta(seconds=1)
    assert store.heartbeat([job.id or ""]) == 0
    assert store.reap(later, "worker lost") == []
    assert store.get(job.id or "").state == JobState.CANCELLED  # type: ignore[union-attr]


def test_a_reaped_job_can_be_claimed_again(store: JobStore) -> None:
    job = running(store)
    store.reap(datetime.now(UTC) + timedelta(seconds=1), "worker lost")
    again = store.claim(job)
    assert again is not None
    assert (again.state, again.attempts) == (JobState.RUNNING, 2)


def test_dead_letters_are_kept_newest_first(store: JobStore) -> None:
    from adapter.dead_letter import DeadLetter

    first = DeadLetter(
        queue="jobs.mail",
        task_name="adapter.run_job",
        task_id="t-1",
        content_type="application/x-python-serialize",
        reason="content type is not JSON",
        body="\\x80\\x04",
        headers={"task": "adapter.run_job", "nested": {"n": 1}},
        received_at=datetime(2026, 1, 1, tzinfo=UTC),
    )
    second = DeadLetter(queue="jobs.mail", reason="not JSON", body="{oops")
    store.record_dead_letter(first)
    store.record_dead_letter(second)
    assert store.dead_letters() == [second, first]
    assert store.dead_letters(take=1) == [second]


def test_claim_refuses_a_job_running_with_a_fresh_heartbeat(store: JobStore) -> None:
    job = running(store)
    just_before = datetime.now(UTC) - timedelta(seconds=30)
    assert store.claim(job, busy_after=just_before) is None  # alive elsewhere: a duplicate
    stored = store.get(job.id or "")
    assert stored is not None and (stored.state, stored.attempts) == (JobState.RUNNING, 1)
    later = datetime.now(UTC) + timedelta(seconds=1)
    taken = store.claim(job, busy_after=later)  # its beat is older: the worker is gone
    assert taken is not None and taken.attempts == 2
    waiting = make_job()
    store.insert(waiting)
    assert store.claim(waiting, busy_after=just_before) is not None  # only RUNNING is busy
