"""Redis job store: every job a hash, sorted sets as indexes, Lua scripts for every write.

URL: ``redis://[[user]:password@]host[:port][/db]`` or ``rediss://...`` (TLS), as
``redis.Redis.from_url`` reads it; query parameters such as ``socket_timeout`` pass through.
One Redis server (or a Sentinel-managed primary); not Redis Cluster, since scripts touch keys
they build from the prefix. Several stores share a database when their prefixes differ.

Key layout, under ``prefix`` (``"adapter"`` unless given):

==================================  =========================================================
``{p}:schema``                      string: the layout version (``SCHEMA_VERSION``)
``{p}:job:{id}``                    hash: the job's columns, as the SQL store's table
``{p}:queues``                      set: queue names that have jobs
``{p}:idx:all``                     sorted set: every job, scored by ``created_at``
``{p}:idx:queue:{q}``               sorted set: queue ``q``'s jobs, by ``created_at``
``{p}:idx:state:{s}``               sorted set: jobs in state ``s``, by ``created_at``
``{p}:idx:state:{s}:queue:{q}``     sorted set: queue ``q``'s jobs in state ``s``, likewise
``{p}:idx:settled``                 sorted set: settled jobs, scored by ``settled_at``
``{p}:idx:settled:queue:{q}``       sorted set: queue ``q``'s settled jobs, likewise
``{p}:idx:unstamped``               set: jobs in a settled state but without ``settled_at``
``{p}:tmp:{hex}``                   a union of indexes, alive only while one script runs
``{p}:idx:due``                     sorted set: due-marked jobs, by ``ready_at`` (``due.py``)
``{p}:uniq:{q}:{key}``              string: the waiting job of queue ``q`` holding ``key``
``{p}:dead``                        list: dead letters as JSON, newest first, capped
``{p}:changed``                     pub/sub channel: ids of jobs whose state or progress was
                                    written (``adapter.store.redis.changes``)
==================================  =========================================================

The state comes before the queue in ``idx:state:{s}:queue:{q}`` because states are a fixed
set and queue names may contain ``:``. Hash fields: ``data`` and ``result`` are JSON text,
times are integer microseconds since 1970 UTC (also the scores, exact below 2**53), ``progress``
is a float's ``repr``; ``error``, ``started_at``, ``settled_at``, ``ready_at``, ``unique_key``
and ``retried_from`` are absent when unset, and a hash without ``priority`` (written before the
field existed) reads as priority 0: older hashes need no migration.

Every write is one Lua script (``adapter.store.redis.scripts``), so a job and its index entries
change together, and a settled job is never overwritten. ``update_and_set`` writes an outcome and
a value beside it in the same script (a Celery result of the same database: a job is never
seen settled without it). ``find_many`` pages the indexes by
rank (``ZCARD`` gives the total; several indexes are merged) when every condition of the filter
is about queue name, state or whether the job is settled, combined with AND, and the sort is by
``created_at`` alone: a page costs the same with a million jobs as with ten. Any other query
reads the jobs of the narrowest indexes, in chunks, and evaluates it with ``adapter.conditions``:
exact, but it reads every candidate job, so it is refused (``InvalidListOptionsError`` naming
``SCAN_LIMIT``) when the indexes hold more than ``SCAN_LIMIT`` candidates.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import datetime
from typing import Any

import redis

from adapter.conditions import matches, sort_jobs
from adapter.dead_letter import DeadLetter
from adapter.errors import (
    ConfigurationError,
    DuplicateJobError,
    InvalidListOptionsError,
    StoreError,
    WrongQueueError,
)
from adapter.forksafe import ForkSafeLock
from adapter.job import START, Job, JobState, Transition, utcnow
from adapter.listing import JobList, JobListOptions, SortField, SortOrder, page_bounds
from adapter.masking import mask_url
from adapter.store.base import MUTABLE_FIELDS, Claimed, JobStore, wrong_queue
from adapter.store.changes import Watch
from adapter.store.redis.attempts import KeyWrite
from adapter.store.redis.changes import RedisChangeListener
from adapter.store.redis.due import DueScripts
from adapter.store.redis.layout import (
    RedisKeys,
    field_text,
    from_micros,
    job_from_hash,
    job_hash,
    micros,
    mutable_fields,
    plan_index,
    transition_spec,
)
from adapter.store.redis.scripts import RedisScripts
from adapter.store.schedules import ScheduleStore

logger = logging.getLogger(__name__)

#: Version of the key layout above; a store with another version is refused.
SCHEMA_VERSION = 1
#: Jobs read per pipelined round trip when a query must look at the jobs themselves.
LOAD_CHUNK = 1000
#: Jobs deleted per script call by ``remove_settled``, so Redis is never blocked for long.
REMOVE_BATCH = 500
#: Jobs recorded per script call by ``insert_many``, likewise.
INSERT_CHUNK = 500
#: What the claim script answers when the job is missing and its fields were not sent.
CLAIM_NEEDS_JOB = -1
#: What the claim script answers, with the stored queue name, for a job of another queue.
CLAIM_OTHER_QUEUE = -2
#: Largest ``indexes * (skip + take)`` paged by merging each index's head in Python; above
#: it, one script unions the indexes in Redis first.
MERGE_LIMIT = 20_000
#: Most jobs a query the indexes cannot answer may read (at the limit, with small job data:
#: 0.5 to 1 s and about 20 MB of Python objects); a query that needs more is refused.
SCAN_LIMIT = 10_000
#: Seconds to wait for a connection to Redis.
CONNECT_TIMEOUT_S = 5.0
#: What names a Redis server and database in a client's connection arguments, with the value
#: an absent one means (``same_database``).
_WHERE_DEFAULTS: dict[str, Any] = {"host": "localhost", "port": 6379, "db": 0, "path": None}
#: Seconds to wait for a reply from Redis.
SOCKET_TIMEOUT_S = 30.0


class RedisJobStore(JobStore):
    """Job store in Redis hashes with sorted-set indexes."""

    def __init__(self, url: str, prefix: str = "adapter") -> None:
        """Prepare a store on ``url`` under key ``prefix``; nothing connects before first use."""
        self.url = mask_url(url)
        self.keys = RedisKeys(prefix)
        self._raw_url = url
        self._lock = ForkSafeLock()
        self._client: redis.Redis | None = self._new_client()
        self._scripts = RedisScripts(self._client)
        self._due = DueScripts(self._client)  # called with this process's client each time
        self._pid = os.getpid()
        self._schema_checked = False
        self._changes = RedisChangeListener(url, self.keys.changes)

    def _new_client(self) -> redis.Redis:
        try:
            return redis.Redis.from_url(
                self._raw_url,
                decode_responses=True,
                socket_connect_timeout=CONNECT_TIMEOUT_S,
                socket_timeout=SOCKET_TIMEOUT_S,
            )
        except ValueError:  # its text, and so its traceback, may hold part of the password
            raise ConfigurationError(
                f"malformed job store URL {self.url} (percent-encode special characters)"
            ) from None

    def _connect(self) -> tuple[redis.Redis, RedisScripts]:
        """Return this process's client, checking the layout version on first use."""
        with self._lock:
            if self._client is None or self._pid != os.getpid():
                self._client = self._new_client()  # a forked child opens its own connections
                self._scripts = RedisScripts(self._client)
                self._pid = os.getpid()
            if not self._schema_checked:
                self._check_schema_version(self._client)
                self._schema_checked = True
            return self._client, self._scripts

    def _check_schema_version(self, client: redis.Redis) -> None:
        client.set(self.keys.schema, str(SCHEMA_VERSION), nx=True)
        stored = client.get(self.keys.schema)
        found = None if stored is None else _text(stored)
        if found != str(SCHEMA_VERSION):
            raise StoreError(
                f"job store schema version is {found}, this adapter needs {SCHEMA_VERSION}"
            )

    @contextlib.contextmanager
    def _talking(self) -> Iterator[tuple[redis.Redis, RedisScripts]]:
        """Give the client and scripts of this process; a Redis error becomes a StoreError."""
        try:
            yield self._connect()
        except redis.RedisError as err:
            raise StoreError(f"job store {self.url} failed: {err}") from err

    def insert(self, job: Job) -> None:
        with self._talking() as (_, scripts):
            args = [self.keys.prefix, str(job.id), *_pairs(job_hash(job, utcnow()))]
            if not scripts.insert(args=args):
                raise DuplicateJobError(f"a job with id {job.id!r} already exists")

    def insert_many(self, new_jobs: Sequence[Job]) -> None:
        now = utcnow()
        batch = [[str(job.id), job_hash(job, now)] for job in new_jobs]
        with self._talking() as (_, scripts):
            for start in range(0, len(batch), INSERT_CHUNK):
                chunk = json.dumps(batch[start : start + INSERT_CHUNK])  # one argument, not 20
                scripts.insert_many(args=[self.keys.prefix, chunk])

    def get(self, job_id: str) -> Job | None:
        with self._talking() as (_, scripts):
            found = self._load(scripts, [job_id])
        return found[0] if found else None

    def claim(self, job: Job, busy_after: datetime | None = None) -> Job | None:
        now = utcnow()
        busy = "" if busy_after is None else str(micros(busy_after))
        args = [
            self.keys.prefix,
            str(job.id),
            str(micros(now)),
            transition_spec(START),
            busy,
            job.queue_name,
        ]
        with self._talking() as (_, scripts):
            recorded, fields = json.loads(scripts.claim(args=args))
            if recorded == CLAIM_NEEDS_JOB:
                args += _pairs(job_hash(job, now))
                recorded, fields = json.loads(scripts.claim(args=args))
        found = _claimed(job, recorded, fields)
        if isinstance(found, WrongQueueError):
            raise found
        return found

    def claim_many(self, jobs: Sequence[Job], busy_after: datetime | None = None) -> list[Claimed]:
        now = utcnow()
        head = [self.keys.prefix, str(micros(now)), transition_spec(START)]
        head.append("" if busy_after is None else str(micros(busy_after)))
        wanted: list[list[Any]] = [[str(job.id), job.queue_name] for job in jobs]
        with self._talking() as (_, scripts):
            answers = json.loads(scripts.claim_many(args=[*head, json.dumps(wanted)]))
            missing = [i for i, (recorded, _) in enumerate(answers) if recorded == CLAIM_NEEDS_JOB]
            if missing:  # rare: a job published by a producer of another store; record it now
                wanted = [[*wanted[i], job_hash(jobs[i], now)] for i in missing]
                again = json.loads(scripts.claim_many(args=[*head, json.dumps(wanted)]))
                for i, answer in zip(missing, again, strict=True):
                    answers[i] = answer
        return [_claimed(job, *answer) for job, answer in zip(jobs, answers, strict=True)]

    def now(self) -> datetime:
        with self._talking() as (client, _):
            seconds, microseconds = client.time()
        return from_micros(int(seconds) * 1_000_000 + int(microseconds))

    def take_due(self, now: datetime, limit: int) -> list[Job]:
        args: list[str | int] = [self.keys.prefix, micros(now), limit]
        with self._talking() as (client, _):
            found = self._due.take_due(args=args, client=client)
        return [job_from_hash(fields) for fields in json.loads(found)]

    def mark_due(self, job_id: str, ready_at: datetime) -> Job | None:
        args: list[str | int] = [self.keys.prefix, job_id, micros(ready_at), micros(utcnow())]
        with self._talking() as (client, _):
            found = json.loads(self._due.mark_due(args=args, client=client))
        return job_from_hash(found[0]) if found else None

    def add_unique(self, job: Job, *, replace: bool) -> tuple[Job, bool]:
        now = utcnow()
        ready_at = "" if job.ready_at is None else str(micros(job.ready_at))
        args = [
            self.keys.prefix,
            str(job.id),
            job.queue_name,
            str(job.unique_key),
            "1" if replace else "0",
            json.dumps(job.data),
            ready_at,
            str(micros(now)),
            *_pairs(job_hash(job, now)),
        ]
        with self._talking() as (client, _):
            answer = json.loads(self._due.add_unique(args=args, client=client))
        if answer[0] == -1:
            raise DuplicateJobError(f"a job with id {job.id!r} already exists")
        if answer[0] == 1:
            return job, True
        return job_from_hash(answer[1][0]), False

    def set_progress(self, job_id: str, progress: float) -> bool:
        args: list[str | int] = [self.keys.prefix, job_id, repr(float(progress)), micros(utcnow())]
        with self._talking() as (_, scripts):
            return bool(scripts.set_progress(args=args))

    def update(self, job: Job) -> bool:
        return self.update_and_set(job, None)

    def update_and_set(self, job: Job, beside: KeyWrite | None) -> bool:
        """``update`` the job and, when that applied, make ``beside``'s write in the same script.

        One round trip for a job's outcome and what goes with it in this database (a Celery
        result: ``adapter.celery.results``); neither is written when the job is settled.
        """
        fields, unset = _written(job)
        args: list[str | bytes] = [self.keys.prefix, str(job.id), json.dumps(fields)]
        args.append(json.dumps(unset))
        if beside is not None:
            args += [beside.key, beside.value, str(beside.expires_s or "")]
        with self._talking() as (_, scripts):
            return bool(scripts.update(args=args))

    def same_database(self, client: redis.Redis) -> bool:
        """True when ``client`` talks to this store's Redis server and database."""
        mine = redis.connection.parse_url(self._raw_url)  # type: ignore[no-untyped-call]
        theirs = client.connection_pool.connection_kwargs
        return all(
            mine.get(name, default) == theirs.get(name, default)
            for name, default in _WHERE_DEFAULTS.items()
        )

    def update_many(self, jobs: Sequence[Job]) -> list[bool]:
        batch = [[str(job.id), *_written(job)] for job in jobs]
        with self._talking() as (_, scripts):
            return [
                bool(done)
                for done in scripts.update_many(args=[self.keys.prefix, json.dumps(batch)])
            ]

    def queue_counts(self) -> dict[str, dict[JobState, int]]:
        with self._talking() as (client, _):
            names = sorted(_text(name) for name in client.smembers(self.keys.queues))
            pipe = client.pipeline(transaction=False)
            for name in names:
                for state in JobState:
                    pipe.zcard(self.keys.state_queue(state.value, name))
            cards = iter(pipe.execute())
        counts = {name: {state: int(next(cards)) for state in JobState} for name in names}
        return {name: by_state for name, by_state in counts.items() if any(by_state.values())}

    def _apply(
        self,
        transition: Transition,
        job_ids: list[str] | None,
        stale_before: datetime | None,
        given: dict[str, Any],
    ) -> list[Job]:
        fields = {name: field_text(name, value) for name, value in given.items()}
        args: list[str] = [
            self.keys.prefix,
            str(micros(utcnow())),
            transition_spec(transition),
            "" if stale_before is None else str(micros(stale_before)),
            json.dumps(fields),
            *([] if job_ids is None else job_ids),
        ]
        with self._talking() as (_, scripts):
            changed = scripts.transition(args=args)
        return [job_from_hash(found) for found in json.loads(changed)]

    def record_dead_letter(self, letter: DeadLetter) -> None:
        with self._talking() as (client, _), client.pipeline(transaction=True) as pipe:
            pipe.lpush(self.keys.dead_letters, letter.model_dump_json())
            pipe.ltrim(self.keys.dead_letters, 0, self.max_dead_letters - 1)
            pipe.execute()

    def dead_letters(self, take: int = 100) -> list[DeadLetter]:
        with self._talking() as (client, _):
            found = client.lrange(self.keys.dead_letters, 0, take - 1) if take > 0 else []
        return [DeadLetter.model_validate_json(text) for text in found]

    def cancelled_among(self, job_ids: Sequence[str]) -> set[str]:
        wanted = list(dict.fromkeys(job_ids))
        if not wanted:
            return set()
        with self._talking() as (client, _):
            scores = client.zmscore(self.keys.state(JobState.CANCELLED.value), wanted)
        return {job_id for job_id, score in zip(wanted, scores, strict=True) if score is not None}

    def delete(self, job_id: str) -> None:
        with self._talking() as (_, scripts):
            scripts.delete(args=[self.keys.prefix, job_id])

    @functools.cached_property
    def schedules(self) -> ScheduleStore:
        from adapter.store.redis.schedules import RedisScheduleStore

        return RedisScheduleStore(self._talking, self.keys)

    def watch(self, job_id: str) -> Watch:
        return self._changes.watch(job_id)

    def close(self) -> None:
        self._changes.close()
        with self._lock:
            if self._client is not None:
                self._client.close()
                self._client = None

    def _find_many(self, parsed: JobListOptions) -> JobList:
        skip, take = page_bounds(parsed)
        with self._talking() as (client, scripts):
            plan = plan_index(
                parsed,
                self.keys,
                queue_names=lambda: {_text(name) for name in client.smembers(self.keys.queues)},
                has_unstamped=lambda: bool(client.scard(self.keys.unstamped)),
            )
            if not plan.keys:
                return JobList(items=[], total_items=0)
            if plan.exact and set(parsed.sort) <= {SortField.CREATED_AT}:
                newest_first = parsed.sort.get(SortField.CREATED_AT) is SortOrder.DESC
                total, ids = self._page(client, scripts, plan.keys, skip, take, newest_first)
                return JobList(items=self._load(scripts, ids), total_items=total)
            return self._scan(client, scripts, plan.keys, parsed)

    def _scan(
        self, client: redis.Redis, scripts: RedisScripts, keys: list[str], options: JobListOptions
    ) -> JobList:
        """Answer a query the indexes cannot: read at most ``SCAN_LIMIT`` jobs, in chunks."""
        with client.pipeline(transaction=False) as pipe:
            for key in keys:
                pipe.zcard(key)
            candidates = sum(int(count) for count in pipe.execute())
        if candidates > SCAN_LIMIT:
            raise InvalidListOptionsError(
                f"this filter and sort need all {candidates} candidate jobs read, more than the "
                f"Redis store's scan limit of {SCAN_LIMIT} (SCAN_LIMIT): its indexes answer only "
                "queueName, state and isSettled filters joined by AND, sorted by createdAt; "
                "narrow the filter by queueName or state"
            )
        with client.pipeline(transaction=True) as pipe:
            for key in keys:
                pipe.zrange(key, 0, -1)
            ids = [job_id for members in pipe.execute() for job_id in members]
        matching: list[Job] = []
        for start in range(0, len(ids), LOAD_CHUNK):
            for job in self._load(scripts, ids[start : start + LOAD_CHUNK]):
                if matches(job, options.filter, options.filter_operator):
                    # only the page's jobs are kept whole: data may be up to a MiB each
                    matching.append(job.model_copy(update={"data": None, "result": None}))
        skip, take = page_bounds(options)
        page = [str(job.id) for job in sort_jobs(matching, options.sort)[skip : skip + take]]
        return JobList(items=self._load(scripts, page), total_items=len(matching))

    def _page(
        self,
        client: redis.Redis,
        scripts: RedisScripts,
        keys: list[str],
        skip: int,
        take: int,
        newest_first: bool,
    ) -> tuple[int, list[str]]:
        """Return the total of ``keys`` and the ids at ranks ``skip`` to ``skip + take``."""
        order = int(newest_first)
        if len(keys) > 1 and len(keys) * (skip + take) <= MERGE_LIMIT:
            with client.pipeline(transaction=True) as pipe:
                for key in keys:
                    scripts.page(keys=[key], args=[0, skip + take, order], client=pipe)
                replies = pipe.execute()
            total = sum(int(count) for count, _ in replies)
            return total, _merged([flat for _, flat in replies], newest_first)[skip : skip + take]
        union = keys if len(keys) == 1 else [*keys, self.keys.scratch()]
        total, flat = scripts.page(keys=union, args=[skip, take, order])
        return int(total), list(flat[::2])

    def _load(self, scripts: RedisScripts, ids: Iterable[str]) -> list[Job]:
        """Return the jobs of ``ids`` that exist, in that order, read in chunks."""
        jobs: list[Job] = []
        wanted = list(ids)
        for start in range(0, len(wanted), LOAD_CHUNK):
            found = scripts.load(args=[self.keys.prefix, *wanted[start : start + LOAD_CHUNK]])
            jobs.extend(job_from_hash(fields) for fields in json.loads(found))
        return jobs

    def find_many_by_id(self, ids: Sequence[str]) -> list[Job]:
        with self._talking() as (_, scripts):
            return self._load(scripts, dict.fromkeys(ids))

    def remove_settled(
        self, queue_names: Sequence[str] | None = None, older_than: datetime | None = None
    ) -> int:
        cutoff = micros(utcnow() if older_than is None else older_than)
        indexes = (
            [self.keys.settled_queue(name) for name in dict.fromkeys(queue_names)]
            if queue_names
            else [self.keys.settled]
        )
        removed = 0
        with self._talking() as (_, scripts):
            for index in indexes:
                while True:
                    args: list[str | int] = [self.keys.prefix, index, cutoff, REMOVE_BATCH]
                    batch = int(scripts.remove_settled(args=args))
                    removed += batch
                    if batch < REMOVE_BATCH:
                        break
        return removed


def _merged(pages: Iterable[Sequence[str]], newest_first: bool) -> list[str]:
    """Return the ids of flat ``[id, score, ...]`` pages in one order: by score, then id."""
    heads = [(float(flat[i + 1]), flat[i]) for flat in pages for i in range(0, len(flat), 2)]
    heads.sort(key=lambda head: (-head[0] if newest_first else head[0], head[1]))
    return [job_id for _, job_id in heads]


def _claimed(job: Job, recorded: int, fields: Any) -> Claimed:
    """Read the claim script's answer for ``job``."""
    if recorded == CLAIM_OTHER_QUEUE:
        return wrong_queue(job, fields)
    if recorded:
        logger.info("job %s was not in the store yet; recorded it from its message", job.id)
    return job_from_hash(fields) if fields else None


def _written(job: Job) -> tuple[dict[str, str], list[str]]:
    """The fields ``update`` sets, and the mutable fields it deletes (unset)."""
    fields = mutable_fields(job, utcnow())
    return fields, [name for name in MUTABLE_FIELDS if name not in fields]


def _pairs(fields: Mapping[str, str]) -> list[str]:
    return [part for pair in fields.items() for part in pair]


def _text(value: bytes | str) -> str:
    """Return a reply as text (the client already decodes; this tells mypy so)."""
    return value.decode() if isinstance(value, bytes) else value
