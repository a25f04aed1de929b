"""The job store contract, run on every store: memory, SQLite (a file per test), PostgreSQL, Redis.

It ports Vendure's findMany spec (in-memory-job-queue-strategy.spec.ts) and adds every operator
family, nested groups, pagination, ``find_many_by_id`` and ``remove_settled``. Most answers are
also checked against ``adapter.conditions.list_jobs``, the in-Python reading of the same options,
so that every store means the same thing by them. Then every write: insert, claim, progress,
update, cancel, defer, heartbeat, reap, dead letters, each with the settled guard (a settled job
is never overwritten) and snapshots in and out. What one backend alone has is tested beside it:
tests/unit/test_sql_store.py, tests/contract/test_redis_store.py, tests/unit/test_memory_store.py.

PostgreSQL runs in a schema of its own, created for the session and dropped after it; each test
empties the table afterwards. Redis keeps its keys under a prefix of the session's own; each test
deletes every key under it afterwards (never a flush: the server is shared).
"""

from __future__ import annotations

import json
import multiprocessing
import threading
import uuid
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from adapter.conditions import list_jobs
from adapter.errors import DuplicateJobError, InvalidListOptionsError, WrongQueueError
from adapter.job import CANCEL, PURGE, Job, JobState
from adapter.listing import (
    DEFAULT_TAKE,
    MAX_TAKE,
    JobFilter,
    JobList,
    JobListOptions,
    SortField,
    SortOrder,
    StringOperators,
)
from adapter.patterns import MATCH_BUDGET_S
from adapter.store.base import JobStore
from adapter.store.memory import MemoryJobStore
from adapter.store.redis.store import RedisJobStore
from adapter.store.sql.store import SqlJobStore
from tests.factories import at, make_job, make_spec_jobs, make_varied_jobs
from tests.support import delete_redis_keys, postgres_schema

ALL = ["v-pending", "v-running", "e-done", "e-failed", "i-cancelled", "r-retrying", "r-done"]
SETTLED = ["e-done", "e-failed", "i-cancelled", "r-done"]
UNSETTLED = ["v-pending", "v-running", "r-retrying"]
CREATED = datetime(2020, 3, 1, 10, 0, 0, 123456, tzinfo=UTC)

#: Stores that several processes share: every store but memory.
SHARED_STORES = [
    "sqlite",
    pytest.param("postgres", marks=pytest.mark.postgres),
    pytest.param("redis", marks=pytest.mark.redis),
]


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


def empty_store(kind: str, request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[JobStore]:
    """Yield an empty store of ``kind``, then close or empty it."""
    if kind == "memory":
        yield MemoryJobStore()
        return
    if kind == "sqlite":
        opened = SqlJobStore(f"sqlite:///{tmp_path / 'jobs.sqlite3'}")
        yield opened
        opened.close()
        return
    if kind == "redis":
        yield request.getfixturevalue("redis_store")
        return
    shared: SqlJobStore = request.getfixturevalue("postgres_store")
    yield shared
    while leftovers := shared.find_many({"take": MAX_TAKE}).items:
        for job in leftovers:
            shared.delete(str(job.id))


@pytest.fixture(params=["memory", *SHARED_STORES])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[JobStore]:
    """An empty store of each kind."""
    yield from empty_store(request.param, request, tmp_path)


@pytest.fixture(params=SHARED_STORES)
def shared_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[JobStore]:
    """An empty store of each kind that processes share."""
    yield from empty_store(request.param, request, tmp_path)


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


def _nested(depth: int) -> dict[str, Any]:
    """Return options whose filter's ``_and`` groups nest ``depth`` levels deep."""
    found: dict[str, Any] = {"queueName": {"eq": "v"}}
    for _ in range(depth):
        found = {"_and": [found]}
    return {"filter": found}


#: Options no store can answer, each with the start of the error that names it.
UNANSWERABLE: dict[str, tuple[dict[str, Any], str]] = {
    "skip 2**63": ({"skip": 2**63}, r"^skip: "),
    "year 1 with an offset": (
        {"filter": {"createdAt": {"before": "0001-01-01T00:30:00+01:00"}}},
        r"^filter\.createdAt\.before: .*years 1 to 9999",
    ),
    "year 9999 with an offset": (
        {"filter": {"settledAt": {"between": {"start": CREATED, "end": "9999-12-31T23:00-05:00"}}}},
        r"^filter\.settledAt\.between\.end: .*years 1 to 9999",
    ),
    "in over 65,535 items": (
        {"filter": {"id": {"in": [str(n) for n in range(65_536)]}}},
        r"^filter\.id\.in: list should have at most 10000 items",
    ),
    "notIn over 65,535 items": (
        {"filter": {"queueName": {"notIn": ["q"] * 65_536}}},
        r"^filter\.queueName\.notIn: list should have at most 10000 items",
    ),
    "lists over the limit together": (
        {"filter": {"_or": [{"id": {"in": ["a"] * 6000}}, {"state": {"in": ["b"] * 6000}}]}},
        r"^filter: 12000 values in all, more than the limit of 10000$",
    ),
    "_and nested 40 deep": (_nested(40), r"^filter: _and/_or nested 40 levels deep"),
    "NUL in text": (
        {"filter": {"_or": [{"queueName": {"in": ["v", "a\x00b"]}}]}},
        r"^filter\._or\[0\]\.queueName\.in\[1\]: text with a NUL character",
    ),
    "lone surrogate in text": (
        {"filter": {"id": {"eq": "\ud800"}}},
        r"^filter\.id\.eq: text that is not valid Unicode",
    ),
    "regex Python cannot compile": (
        {"filter": {"queueName": {"regex": "v-("}}},
        r"^filter\.queueName\.regex: not a valid regular expression",
    ),
    "regex too long": (
        {"filter": {"state": {"regex": "a" * 257}}},
        r"^filter\.state\.regex: a pattern of 257 characters is longer than the limit of 256",
    ),
    "regex with nested quantifiers (ReDoS)": (
        {"filter": {"queueName": {"regex": "^([a-z-]+)+!"}}},
        r"^filter\.queueName\.regex: a repeated group holds a repeat",
    ),
}


@pytest.mark.parametrize("case", UNANSWERABLE)
def test_an_option_no_store_can_answer_is_refused_naming_it(
    store: JobStore, varied_jobs: list[Job], case: str
) -> None:
    options, error = UNANSWERABLE[case]
    with pytest.raises(InvalidListOptionsError, match=error) as caught:
        store.find_many(options)
    assert len(str(caught.value)) < 400  # never the whole refused value, nor database text


@pytest.mark.parametrize(
    "options",
    [
        {"skip": 2**63 - 1},
        {"filter": {"createdAt": {"between": {"start": "0001-01-01", "end": "9999-12-31"}}}},
        {"filter": {"attempts": {"eq": 2**70}, "_or": [{"progress": {"gt": 1e308}}]}},
        {"filter": {"id": {"in": [str(n) for n in range(10_000)]}}},
        {"filter": {"queueName": {"regex": "(?i)^E-(?=d)|(a|aa)+-$"}}},
    ],
)
def test_extreme_options_every_store_can_answer_agree_with_list_jobs(
    store: JobStore, varied_jobs: list[Job], options: dict[str, Any]
) -> None:
    agreed(store, varied_jobs, options)


def test_a_pattern_valid_in_python_but_not_in_postgresql_is_refused_there_naming_it(
    store: JobStore, varied_jobs: list[Job]
) -> None:
    options = {"filter": {"queueName": {"regex": "(?P<kind>e)-"}}}
    if not (isinstance(store, SqlJobStore) and store.url.startswith("postgresql")):
        agreed(store, varied_jobs, options)
        return
    with pytest.raises(InvalidListOptionsError) as caught:
        store.find_many(options)
    assert str(caught.value) == (
        "filter.queueName.regex '(?P<kind>e)-': PostgreSQL cannot use this pattern (valid in "
        "Python, not in PostgreSQL's regular expressions)"
    )


class Ticker:
    """A thread that counts ticks until stopped: what the rest of the process got meanwhile."""

    def __init__(self) -> None:
        self.ticks = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.001):
            self.ticks += 1

    def __enter__(self) -> Ticker:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


@pytest.mark.parametrize(
    "kind", ["memory", "sqlite", pytest.param("redis", marks=pytest.mark.redis)]
)
def test_a_pattern_that_runs_out_of_time_is_refused_while_other_threads_run(
    kind: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    # (a|aa)+$ backtracks exponentially on a run of a's that does not end the name; no
    # nested quantifier, so only the matching budget stops it (PostgreSQL's engine does not
    # backtrack: it answers at once).
    pattern = "(a|aa)+$"
    for store in empty_store(kind, request, tmp_path):
        stock(store, [make_job(queue_name="a" * 60 + "-", created_at=at(9, 0))])
        with Ticker() as ticker, pytest.raises(InvalidListOptionsError) as caught:
            store.find_many({"filter": {"queueName": {"regex": pattern}}})
        assert str(caught.value).startswith(
            f"filter.queueName.regex: {pattern!r} took more than the {MATCH_BUDGET_S:g} s "
            "matching budget of one query"
        )
        assert ticker.ticks >= 10  # the GIL was not held while matching


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


def test_insert_many_indexes_every_job_as_insert_does(store: JobStore) -> None:
    """The same jobs, one set inserted one by one and one in a batch, answer alike."""
    now = datetime.now(UTC)

    def jobs(prefix: str) -> list[Job]:
        every = [
            *make_varied_jobs(),
            make_job(id="d-delayed", queue_name="video", ready_at=now - timedelta(seconds=1)),
            make_job(id="u-unique", queue_name="video", unique_key="sku-1"),
            make_job(id="c-unstamped", queue_name="email", state=JobState.CANCELLED),
        ]
        return [
            job.model_copy(
                update={"id": prefix + str(job.id), "queue_name": prefix + job.queue_name}
            )
            for job in every
        ]

    def answers(prefix: str) -> dict[str, Any]:
        seen: dict[str, Any] = {}
        filters: list[dict[str, Any]] = [
            {},
            {"isSettled": {"eq": True}},
            {"isSettled": {"eq": False}},
        ]
        filters += [{"state": {"eq": state.value}} for state in JobState]
        for queue_name in {job.queue_name for job in jobs(prefix)}:
            for extra in filters:
                page = store.find_many({"filter": {"queueName": {"eq": queue_name}, **extra}})
                found = [str(job.id).removeprefix(prefix) for job in page.items]
                seen[f"{queue_name.removeprefix(prefix)} {json.dumps(extra)}"] = found
        for queue_name, counts in store.queue_counts().items():
            if queue_name.startswith(prefix):
                seen[queue_name.removeprefix(prefix)] = counts
        return seen

    for job in jobs("one-"):
        store.insert(job)
    store.insert_many(jobs("many-"))

    batched = answers("many-")
    assert batched == answers("one-")
    assert batched['video {"state": {"eq": "PENDING"}}'] == ["v-pending", "d-delayed", "u-unique"]
    assert batched['email {"isSettled": {"eq": true}}'] == ["e-done", "e-failed"]
    assert batched['email {"state": {"eq": "CANCELLED"}}'] == ["c-unstamped"]
    assert batched["video"][JobState.PENDING] == 3
    assert sorted(str(job.id) for job in store.take_due(now, 10)) == [
        "many-d-delayed",
        "one-d-delayed",
    ]
    held, inserted = store.add_unique(
        make_job(queue_name="many-video", unique_key="sku-1"), replace=False
    )
    assert (held.id, inserted) == ("many-u-unique", False)
    assert store.remove_settled(["many-email", "many-video"]) == 2  # e-done, e-failed
    assert store.remove_settled(["one-email", "one-video"]) == 2


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


def test_only_the_newest_dead_letters_are_kept(
    store: JobStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    from adapter.dead_letter import DeadLetter

    monkeypatch.setattr(store, "max_dead_letters", 3)  # the PostgreSQL store is shared
    start = datetime(2100, 1, 1, tzinfo=UTC)  # newer than any other test's letters
    for n in range(5):
        store.record_dead_letter(
            DeadLetter(queue="jobs.mail", reason=f"bad {n}", received_at=start + timedelta(n))
        )
    assert [letter.reason for letter in store.dead_letters()] == ["bad 4", "bad 3", "bad 2"]
    assert store.dead_letters(take=0) == []


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


# insert / get / delete


def stored(store: JobStore, job: Job) -> Job:
    """Return ``job`` as the store holds it now; fail if it is missing."""
    found = store.get(str(job.id))
    assert found is not None, f"job {job.id} is not in the store"
    return found


def test_get_returns_every_field_that_was_inserted_with_times_in_utc(store: JobStore) -> None:
    berlin = timezone(timedelta(hours=2))
    job = make_job(
        queue_name="send-email",
        data={"to": ["a@example.com"], "n": 1, "nested": {"ok": True}},
        state=JobState.FAILED,
        progress=37.5,
        result={"sent": [1, 2]},
        error="smtp down",
        retries=3,
        attempts=4,
        created_at=CREATED,
        started_at=datetime(2020, 3, 1, 12, 0, 1, 654321, tzinfo=berlin),
        settled_at=datetime(2020, 3, 1, 10, 0, 2, 1, tzinfo=UTC),
    )
    store.insert(job)
    found = stored(store, job)
    assert found == job
    for value in (found.created_at, found.started_at, found.settled_at):
        assert value is not None and value.utcoffset() == timedelta(0)
    assert found.created_at == CREATED


def test_get_of_unset_fields_gives_them_back_unset(store: JobStore) -> None:
    job = make_job(data=None)
    store.insert(job)
    found = stored(store, job)
    assert found.data is None and found.result is None and found.error is None
    assert found.started_at is None and found.settled_at is None
    assert found.progress == 0 and isinstance(found.progress, int)


def test_get_of_unknown_id_is_none(store: JobStore) -> None:
    assert store.get("no-such-job") is None


def test_insert_of_a_taken_id_is_refused_and_changes_nothing(store: JobStore) -> None:
    first = make_job(id="same", queue_name="first")
    store.insert(first)
    with pytest.raises(DuplicateJobError, match=r"^a job with id 'same' already exists$"):
        store.insert(make_job(id="same", queue_name="second"))
    assert stored(store, first).queue_name == "first"
    assert store.find_many().total_items == 1


def test_delete_removes_the_job(store: JobStore) -> None:
    job = make_job()
    store.insert(job)
    store.delete(str(job.id))
    assert store.get(str(job.id)) is None


def test_delete_of_unknown_id_changes_nothing(store: JobStore) -> None:
    job = make_job()
    store.insert(job)
    store.delete("no-such-job")
    assert stored(store, job) == job


# claim


def test_claim_moves_pending_job_to_running_and_counts_an_attempt(store: JobStore) -> None:
    job = make_job()
    store.insert(job)
    claimed = store.claim(job)
    assert claimed is not None
    assert (claimed.state, claimed.attempts) == (JobState.RUNNING, 1)
    assert claimed.started_at is not None
    assert stored(store, job) == claimed


def test_claim_of_retrying_job_counts_another_attempt(store: JobStore) -> None:
    job = make_job(state=JobState.RETRYING, retries=2, attempts=1)
    store.insert(job)
    claimed = store.claim(job)
    assert claimed is not None
    assert (claimed.state, claimed.attempts) == (JobState.RUNNING, 2)


@pytest.mark.parametrize("state", [JobState.COMPLETED, JobState.FAILED, JobState.CANCELLED])
def test_claim_of_settled_job_returns_none_and_changes_nothing(
    store: JobStore, state: JobState
) -> None:
    job = make_job(state=state, attempts=1, settled_at=CREATED)
    store.insert(job)
    before = stored(store, job)
    assert store.claim(job) is None
    assert stored(store, job) == before


def test_claim_of_cancelled_pending_job_returns_none(store: JobStore) -> None:
    job = make_job()
    store.insert(job)
    cancelled = stored(store, job)
    cancelled.cancel()
    assert store.update(cancelled)
    assert store.claim(job) is None
    assert stored(store, job).state == JobState.CANCELLED


def test_claim_of_unknown_job_records_it_then_claims_it(store: JobStore) -> None:
    job = make_job(queue_name="resize-image", data={"w": 10}, retries=2)
    claimed = store.claim(job)
    assert claimed is not None
    assert (claimed.state, claimed.attempts) == (JobState.RUNNING, 1)
    assert (claimed.queue_name, claimed.data, claimed.retries) == ("resize-image", {"w": 10}, 2)
    assert stored(store, job) == claimed
    assert ids(store.find_many({"filter": {"state": {"eq": "RUNNING"}}})) == [job.id]


def test_claim_of_unknown_settled_job_records_it_but_does_not_claim_it(store: JobStore) -> None:
    job = make_job(state=JobState.CANCELLED, settled_at=CREATED)
    assert store.claim(job) is None
    assert stored(store, job) == job


@pytest.mark.parametrize("state", [JobState.PENDING, JobState.RETRYING, JobState.COMPLETED])
def test_claim_naming_another_queue_is_refused_and_changes_nothing(
    store: JobStore, state: JobState
) -> None:
    job = make_job(queue_name="b", data={"owner": "b"}, state=state, retries=1, attempts=1)
    store.insert(job)
    before = stored(store, job)
    forged = job.model_copy(update={"queue_name": "a", "data": {"owner": "forger"}})
    with pytest.raises(WrongQueueError, match="stored for queue 'b', not 'a'"):
        store.claim(forged)
    assert stored(store, job) == before
    assert store.claim(job) is not None or state == JobState.COMPLETED  # its own queue's may


def test_claim_returns_the_stored_data_not_the_messages(store: JobStore) -> None:
    job = make_job(data={"owner": "b"})
    store.insert(job)
    claimed = store.claim(job.model_copy(update={"data": {"owner": "forger"}}))
    assert claimed is not None and claimed.data == {"owner": "b"}
    assert stored(store, job).data == {"owner": "b"}


# set_progress, update, cancel: a settled job is never overwritten


def test_set_progress_of_unsettled_job_is_recorded(store: JobStore) -> None:
    job = make_job()
    store.insert(job)
    assert store.set_progress(str(job.id), 40)
    assert stored(store, job).progress == 40


def test_set_progress_of_settled_job_is_refused(store: JobStore) -> None:
    job = make_job(state=JobState.COMPLETED, progress=100, settled_at=CREATED)
    store.insert(job)
    assert store.set_progress(str(job.id), 40) is False
    assert stored(store, job).progress == 100


def test_update_writes_the_outcome_of_an_unsettled_job(store: JobStore) -> None:
    job = make_job()
    store.insert(job)
    claimed = store.claim(job)
    assert claimed is not None
    claimed.complete({"sent": 3})
    assert store.update(claimed)
    found = stored(store, job)
    assert (found.state, found.result, found.progress) == (JobState.COMPLETED, {"sent": 3}, 100)
    assert found.is_settled


def test_update_writes_every_mutable_field_and_unsets_cleared_ones(store: JobStore) -> None:
    job = make_job(created_at=CREATED)
    store.insert(job)
    claimed = store.claim(job)
    assert claimed is not None
    claimed.retries = 1
    claimed.fail("boom")
    assert store.update(claimed)
    assert (stored(store, job).state, stored(store, job).error) == (JobState.RETRYING, "boom")
    again = stored(store, job)
    again.error = None
    again.created_at = CREATED + timedelta(days=1)
    again.complete({"sent": 3})
    assert store.update(again)
    found = stored(store, job)
    assert (found.state, found.result, found.error) == (JobState.COMPLETED, {"sent": 3}, None)
    assert (found.created_at, found.retries, found.is_settled) == (CREATED, 1, True)


def test_update_keeps_the_creation_time(store: JobStore) -> None:
    job = make_job(created_at=CREATED)
    store.insert(job)
    changed = stored(store, job)
    changed.created_at = CREATED + timedelta(days=1)
    changed.set_progress(10)
    assert store.update(changed)
    found = stored(store, job)
    assert (found.created_at, found.progress) == (CREATED, 10)


def test_update_of_settled_job_is_refused(store: JobStore) -> None:
    job = make_job()
    store.insert(job)
    first = stored(store, job)
    first.start()
    first.fail("boom")
    assert first.state == JobState.FAILED
    assert store.update(first)
    second = stored(store, job)
    second.complete("late")
    assert store.update(second) is False
    found = stored(store, job)
    assert (found.state, found.result, found.error) == (JobState.FAILED, None, "boom")


@pytest.mark.parametrize("cancelled_by", ["cancel", "update"])
def test_late_completion_never_overwrites_a_cancellation(
    store: JobStore, cancelled_by: str
) -> None:
    job = make_job()
    store.insert(job)
    claimed = store.claim(job)
    assert claimed is not None
    if cancelled_by == "cancel":
        cancelled = store.cancel(str(job.id))
        assert cancelled is not None and cancelled.state == JobState.CANCELLED
    else:
        cancelled = stored(store, job)
        cancelled.cancel()
        assert store.update(cancelled)
    claimed.complete("late result")
    assert store.update(claimed) is False
    assert store.set_progress(str(job.id), 50) is False
    assert store.claim(job) is None
    found = stored(store, job)
    assert (found.state, found.result, found.progress) == (JobState.CANCELLED, None, 0)


def test_cancel_of_a_settled_job_returns_it_unchanged(store: JobStore) -> None:
    job = make_job(state=JobState.COMPLETED, progress=100, settled_at=CREATED)
    store.insert(job)
    assert store.cancel(str(job.id)) == job
    assert store.cancel("no-such-job") is None


def test_purge_cancels_only_waiting_jobs_with_the_reason(store: JobStore) -> None:
    waiting = make_job()
    retrying = make_job(state=JobState.RETRYING, retries=1, attempts=1)
    running = make_job(state=JobState.RUNNING, attempts=1)
    for job in (waiting, retrying, running):
        store.insert(job)
    ids = [str(job.id) for job in (waiting, retrying, running)]

    purged = store.apply(PURGE, ids, given={"error": "purged"})

    assert {job.id for job in purged} == {waiting.id, retrying.id}
    after = {job.id: job for job in store.find_many_by_id(ids)}
    assert [after[job_id].state for job_id in ids] == [
        JobState.CANCELLED,
        JobState.CANCELLED,
        JobState.RUNNING,
    ]
    assert after[waiting.id].is_settled and after[waiting.id].error == "purged"
    assert after[running.id].error is None


def test_writes_to_an_unknown_job_are_refused(store: JobStore) -> None:
    assert store.update(make_job(id="no-such-job")) is False
    assert store.set_progress("no-such-job", 10) is False
    assert store.get("no-such-job") is None


def test_a_settled_state_without_settled_at_is_not_settled(store: JobStore) -> None:
    odd = make_job(id="odd", state=JobState.COMPLETED, created_at=at(10, 0))
    normal = make_job(
        id="normal", state=JobState.COMPLETED, settled_at=at(10, 2), created_at=at(10, 1)
    )
    pending = make_job(id="pending", created_at=at(10, 2))
    jobs = stock(store, [odd, normal, pending])
    for settled in (True, False):
        options: dict[str, Any] = {"filter": {"isSettled": {"eq": settled}}}
        assert store.find_many(options) == list_jobs(jobs, options)
    assert store.remove_settled() == 1
    assert store.find_many().total_items == 2


def test_defer_sends_only_running_unsettled_jobs_back_to_pending(store: JobStore) -> None:
    queued, pending = make_job(id="running"), make_job(id="pending")
    done = make_job(id="done", state=JobState.RUNNING, attempts=1, settled_at=CREATED)
    stock(store, [queued, pending, done])
    assert store.claim(queued) is not None
    assert store.defer(["running", "pending", "done", "running", "nope"]) == 1
    assert store.defer([]) == 0
    found = stored(store, queued)
    assert (found.state, found.attempts) == (JobState.PENDING, 0)
    assert stored(store, done).state == JobState.RUNNING
    page = store.find_many({"filter": {"state": {"eq": "PENDING"}}, "sort": {"createdAt": "ASC"}})
    assert ids(page) == ["running", "pending"]


# Snapshots


def test_returned_jobs_are_independent_snapshots(store: JobStore) -> None:
    job = make_job(data={"lines": [1]})
    store.insert(job)
    first = stored(store, job)
    first.data["lines"].append(2)
    first.cancel()
    second = stored(store, job)
    assert second.data == {"lines": [1]}
    assert second.state == JobState.PENDING
    assert second is not first


def test_changing_an_inserted_job_does_not_change_the_store(store: JobStore) -> None:
    job = make_job(data={"lines": [1]})
    store.insert(job)
    job.data["lines"].append(2)
    job.start()
    found = stored(store, job)
    assert found.data == {"lines": [1]}
    assert found.state == JobState.PENDING


def test_claimed_job_is_a_snapshot(store: JobStore) -> None:
    job = make_job()
    claimed = store.claim(job)
    assert claimed is not None
    claimed.complete("not written")
    assert stored(store, job).state == JobState.RUNNING


# Processes


def _write_from_child(store: JobStore, job: Job, existing_id: str) -> None:
    store.insert(job)
    assert store.set_progress(existing_id, 55)


def test_store_used_in_a_forked_child_writes_what_the_parent_reads(shared_store: JobStore) -> None:
    existing = make_job()
    shared_store.insert(existing)
    from_child = make_job(queue_name="from-child")
    child = multiprocessing.get_context("fork").Process(
        target=_write_from_child, args=(shared_store, from_child, str(existing.id))
    )
    child.start()
    child.join(timeout=60)
    assert child.exitcode == 0
    assert stored(shared_store, from_child).queue_name == "from-child"
    assert stored(shared_store, existing).progress == 55


def test_a_transition_and_a_lookup_of_ten_thousand_jobs_at_once(store: JobStore) -> None:
    many = [make_job(queue_name="many") for _ in range(10_000)]
    store.insert_many(many)
    ids = [str(job.id) for job in many]

    cancelled = store.apply(CANCEL, ids)  # a purge of a long queue does this

    assert len(cancelled) == len(ids)
    found = store.find_many_by_id(ids)
    assert [job.id for job in found] == ids
    assert {job.state for job in found} == {JobState.CANCELLED}
