"""RedisJobStore on the real Redis: its key layout, its indexes, batched removal, its schema.

The behaviour every store shares (the settled guard of every write, conflicts, claims,
snapshots, several processes) is in test_store_contract.py, run on Redis there. These tests are
about what only Redis has: its keys, index membership as jobs change state, paging across ties
and across several indexes, batched removal and the layout version
(tests/unit/test_redis_store_offline.py has what needs no server). Each test keeps its keys
under a prefix of its own and deletes them afterwards (never a flush: the server is shared).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
import redis

from adapter.conditions import list_jobs
from adapter.errors import InvalidListOptionsError, StoreError
from adapter.job import CANCEL, Job, JobState
from adapter.store.redis import store as redis_store_module
from adapter.store.redis.attempts import KeyWrite
from adapter.store.redis.layout import RedisKeys, micros
from adapter.store.redis.store import SCHEMA_VERSION, RedisJobStore
from tests.factories import at, make_job
from tests.support import delete_redis_keys

pytestmark = pytest.mark.redis

CREATED = datetime(2020, 3, 1, 10, 0, 0, 123456, tzinfo=UTC)


@pytest.fixture
def prefix(redis_url: str) -> Iterator[str]:
    """A key prefix of this test's own; every key under it is deleted afterwards."""
    chosen = f"adapter-t-{uuid.uuid4().hex[:12]}"
    yield chosen
    delete_redis_keys(redis_url, chosen)


@pytest.fixture
def store(redis_url: str, prefix: str) -> Iterator[RedisJobStore]:
    """An empty Redis store under this test's prefix."""
    opened = RedisJobStore(redis_url, prefix=prefix)
    yield opened
    opened.close()


@pytest.fixture
def client(redis_url: str) -> Iterator[redis.Redis]:
    """A plain client on the tests' database, for looking at keys."""
    made = redis.Redis.from_url(redis_url, decode_responses=True)
    yield made
    made.close()


def stored(store: RedisJobStore, job: Job) -> Job:
    """Return ``job`` as the store holds it now; fail if it is missing."""
    found = store.get(str(job.id))
    assert found is not None, f"job {job.id} is not in the store"
    return found


def members(client: redis.Redis, key: str) -> list[str]:
    """Return the members of a sorted set, lowest score first."""
    return [str(member) for member in client.zrange(key, 0, -1)]


def keys_under(client: redis.Redis, prefix: str) -> set[str]:
    """Return every key under ``prefix``."""
    return {str(key) for key in client.scan_iter(match=f"{prefix}:*")}


# Opening


def test_store_of_another_schema_version_is_refused(
    redis_url: str, prefix: str, client: redis.Redis
) -> None:
    client.set(RedisKeys(prefix).schema, "99")
    opened = RedisJobStore(redis_url, prefix=prefix)
    with pytest.raises(StoreError) as caught:
        opened.get("anything")
    opened.close()
    assert str(caught.value) == (
        f"job store schema version is 99, this adapter needs {SCHEMA_VERSION}"
    )


def test_first_use_records_the_schema_version(
    store: RedisJobStore, prefix: str, client: redis.Redis
) -> None:
    store.get("anything")
    assert client.get(RedisKeys(prefix).schema) == str(SCHEMA_VERSION)


# delete


def test_delete_leaves_no_key_but_the_schema(
    store: RedisJobStore, prefix: str, client: redis.Redis
) -> None:
    job = make_job(state=JobState.COMPLETED, settled_at=CREATED)
    store.insert(job)
    store.delete(str(job.id))
    store.delete("no-such-job")
    assert store.get(str(job.id)) is None
    assert keys_under(client, prefix) == {RedisKeys(prefix).schema}


# Index membership


def test_a_completed_job_is_listed_under_completed_and_no_longer_under_pending(
    store: RedisJobStore, prefix: str, client: redis.Redis
) -> None:
    keys = RedisKeys(prefix)
    job = make_job(queue_name="mail")
    store.insert(job)
    pending = {"filter": {"queueName": {"eq": "mail"}, "state": {"eq": "PENDING"}}}
    assert store.find_many(pending).total_items == 1
    running = store.claim(job)
    assert running is not None
    running.complete()
    assert store.update(running)
    assert store.find_many(pending).total_items == 0
    completed = {"filter": {"queueName": {"eq": "mail"}, "state": {"eq": "COMPLETED"}}}
    assert [found.id for found in store.find_many(completed).items] == [job.id]
    assert members(client, keys.state_queue("PENDING", "mail")) == []
    assert members(client, keys.state("RUNNING")) == []
    assert members(client, keys.state_queue("COMPLETED", "mail")) == [job.id]
    assert client.zscore(keys.settled, str(job.id)) == micros(
        stored(store, job).settled_at or CREATED
    )
    assert members(client, keys.settled_queue("mail")) == [job.id]


# An outcome with a write beside it (a Celery result)


def claimed_job(store: RedisJobStore) -> tuple[Job, Job]:
    """Insert a job and claim it; return the job and its running copy."""
    job = make_job()
    store.insert(job)
    running = store.claim(job)
    assert running is not None
    return job, running


def test_an_outcome_and_the_write_beside_it_are_made_together_and_published(
    store: RedisJobStore, prefix: str, client: redis.Redis
) -> None:
    job, running = claimed_job(store)
    running.complete("done")
    key = f"{prefix}:result"
    listener = client.pubsub()
    listener.subscribe(key)
    assert listener.get_message(timeout=5) is not None  # the subscription's confirmation
    assert store.update_and_set(running, KeyWrite(key, '{"r": 1}', expires_s=60))
    assert stored(store, job).state == JobState.COMPLETED
    assert client.get(key) == '{"r": 1}'
    assert 0 < client.ttl(key) <= 60
    published = listener.get_message(timeout=5)
    listener.close()
    assert published is not None and published["data"] == '{"r": 1}'


def test_a_settled_job_gets_neither_its_outcome_nor_the_write_beside_it(
    store: RedisJobStore, prefix: str, client: redis.Redis
) -> None:
    job, running = claimed_job(store)
    store.apply(CANCEL, [str(job.id)])
    running.complete("late")
    key = f"{prefix}:result"
    assert not store.update_and_set(running, KeyWrite(key, "late"))
    assert stored(store, job).state == JobState.CANCELLED
    assert client.exists(key) == 0


def test_same_database_tells_the_stores_database_from_another(redis_url: str) -> None:
    base, _, db = redis_url.rpartition("/")
    other = f"{base}/{int(db) + 1 if db.isdigit() else 1}"
    store = RedisJobStore(redis_url)
    same, different = redis.Redis.from_url(redis_url), redis.Redis.from_url(other)
    try:
        assert store.same_database(same)
        assert not store.same_database(different)
    finally:
        same.close()
        different.close()


# Paging by index: ties in created_at, several indexes


def tied_jobs() -> list[Job]:
    """Jobs in two queues and three states whose creation times are often equal."""
    states = [JobState.PENDING, JobState.RUNNING, JobState.RETRYING]
    return [
        make_job(
            id=f"job-{(n * 7) % 25:02d}",
            queue_name=("alpha", "beta")[n % 2],
            state=states[n % 3],
            created_at=at(10, n // 4),
        )
        for n in range(25)
    ]


@pytest.mark.parametrize("merge_limit", [0, 1_000_000], ids=["union-in-redis", "merge-in-python"])
@pytest.mark.parametrize(
    "filter",
    [
        {},
        {"queueName": {"eq": "alpha"}},
        {"state": {"in": ["PENDING", "RETRYING"]}},
        {"queueName": {"in": ["alpha", "beta"]}, "state": {"notEq": "RUNNING"}},
        {"isSettled": {"eq": False}, "queueName": {"contains": "A"}},
    ],
)
@pytest.mark.parametrize("order", [None, "ASC", "DESC"])
def test_pages_by_created_at_break_ties_by_id_like_every_store(
    store: RedisJobStore,
    monkeypatch: pytest.MonkeyPatch,
    prefix: str,
    client: redis.Redis,
    filter: dict[str, Any],
    order: str | None,
    merge_limit: int,
) -> None:
    monkeypatch.setattr(redis_store_module, "MERGE_LIMIT", merge_limit)
    jobs = tied_jobs()
    for job in jobs:
        store.insert(job)
    sort = {} if order is None else {"createdAt": order}
    for skip in range(0, 26, 3):
        for take in (0, 1, 2, 5, 30):
            options = {"filter": filter, "sort": sort, "skip": skip, "take": take}
            assert store.find_many(options) == list_jobs(jobs, options), options
    assert not {key for key in keys_under(client, prefix) if ":tmp:" in key}


# remove_settled


def settled_jobs() -> list[Job]:
    """Six settled jobs in two queues, settled a minute apart from 10:00, and one pending."""
    return [
        make_job(
            id=f"done-{n}",
            queue_name=("mail", "video")[n % 2],
            state=JobState.COMPLETED,
            settled_at=at(10, n),
        )
        for n in range(6)
    ] + [make_job(id="waiting", queue_name="mail")]


@pytest.mark.parametrize(
    ("queue_names", "older_than", "left"),
    [
        (None, None, ["waiting"]),
        (["mail"], None, ["done-1", "done-3", "done-5", "waiting"]),
        (["video", "video"], None, ["done-0", "done-2", "done-4", "waiting"]),
        (None, at(10, 3), ["done-3", "done-4", "done-5", "waiting"]),
        (["mail", "nope"], at(10, 4), ["done-1", "done-3", "done-4", "done-5", "waiting"]),
        (None, at(9, 0), ["done-0", "done-1", "done-2", "done-3", "done-4", "done-5", "waiting"]),
    ],
)
@pytest.mark.parametrize("batch", [1, 2, 500])
def test_remove_settled_deletes_in_batches_what_its_arguments_select(
    store: RedisJobStore,
    monkeypatch: pytest.MonkeyPatch,
    queue_names: list[str] | None,
    older_than: datetime | None,
    left: list[str],
    batch: int,
) -> None:
    monkeypatch.setattr(redis_store_module, "REMOVE_BATCH", batch)
    for job in settled_jobs():
        store.insert(job)
    assert store.remove_settled(queue_names, older_than) == 7 - len(left)
    assert sorted(str(job.id) for job in store.find_many().items) == left
    assert store.find_many({"filter": {"isSettled": {"eq": True}}}).total_items == len(left) - 1


def test_remove_settled_forgets_a_queue_once_it_has_no_jobs(
    store: RedisJobStore, prefix: str, client: redis.Redis
) -> None:
    for job in settled_jobs():
        store.insert(job)
    assert client.smembers(RedisKeys(prefix).queues) == {"mail", "video"}
    store.remove_settled()
    assert client.smembers(RedisKeys(prefix).queues) == {"mail"}
    assert store.find_many({"filter": {"queueName": {"notEq": "x"}}}).total_items == 1


# Queries the indexes answer


@pytest.mark.parametrize(
    "options",
    [
        {"filter": {"queueName": {"eq": "alpha"}, "state": {"eq": "PENDING"}}, "take": 3},
        {"filter": {"isSettled": {"eq": False}}, "sort": {"createdAt": "DESC"}, "skip": 4},
        {"filter": {"state": {"in": ["RUNNING", "RETRYING"]}}, "filterOperator": "OR"},
        {"filter": {"queueName": {"regex": "^b"}, "_and": []}, "sort": {"createdAt": "ASC"}},
    ],
)
def test_queries_the_indexes_answer_never_evaluate_jobs_in_python(
    store: RedisJobStore, monkeypatch: pytest.MonkeyPatch, options: dict[str, Any]
) -> None:
    jobs = tied_jobs()
    for job in jobs:
        store.insert(job)
    expected = list_jobs(jobs, options)

    def refuse(*args: Any) -> None:
        raise AssertionError("find_many read every candidate job")

    monkeypatch.setattr(RedisJobStore, "_scan", refuse)
    assert store.find_many(options) == expected


# Queries the indexes cannot answer


@pytest.mark.parametrize(
    "options",
    [
        {"take": 1, "sort": {"progress": "DESC"}},
        {"filter": {"queueName": {"eq": "alpha"}, "attempts": {"eq": 0}}, "skip": 3, "take": 2},
        {"filter": {"state": {"eq": "PENDING"}, "_or": [{"progress": {"lt": 50}}]}},
    ],
)
def test_a_query_the_indexes_cannot_answer_reads_at_most_the_scan_limit(
    store: RedisJobStore, monkeypatch: pytest.MonkeyPatch, options: dict[str, Any]
) -> None:
    jobs = [job.model_copy(update={"data": {"n": n}}) for n, job in enumerate(tied_jobs())]
    for job in jobs:
        store.insert(job)
    candidates = len(list_jobs(jobs, {"filter": _indexed_part(options), "take": 1000}).items)
    monkeypatch.setattr(redis_store_module, "SCAN_LIMIT", candidates)
    assert store.find_many(options) == list_jobs(jobs, options)  # data of the page included
    monkeypatch.setattr(redis_store_module, "SCAN_LIMIT", candidates - 1)
    with pytest.raises(InvalidListOptionsError) as caught:
        store.find_many(options)
    assert str(caught.value).startswith(
        f"this filter and sort need all {candidates} candidate jobs read, more than the Redis "
        f"store's scan limit of {candidates - 1} (SCAN_LIMIT)"
    )


def _indexed_part(options: dict[str, Any]) -> dict[str, Any]:
    """Return the top-level conditions of ``options`` the indexes answer (queue and state)."""
    found = options.get("filter", {})
    return {name: found[name] for name in ("queueName", "state") if name in found}
