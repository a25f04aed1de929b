"""SQL job store on SQLAlchemy Core: SQLite (the embedded default) and PostgreSQL.

URL: any SQLAlchemy URL, for example ``sqlite:////var/lib/app/jobs.sqlite3`` or
``postgresql+psycopg://user:pass@127.0.0.1:5432/app``. The table ``adapter_job`` mirrors
Vendure's ``job_record``; it is created on first use, and ``adapter_meta`` records the schema
version. Times are stored as UTC without a zone and returned timezone-aware.

SQLite runs in WAL mode with a busy timeout, so several worker processes and threads can write
one file. Engines are opened per OS process: a forked prefork child opens its own.
PostgreSQL pushes job changes to ``updates()`` (LISTEN/NOTIFY, ``adapter.store.sql.changes``);
SQLite's readers poll.

A worker's claim of one job is one statement on PostgreSQL (``_CLAIM_OR_RECORD``: the stored
job claimed, or, when its add's batch is late, the job recorded from its message and claimed
at once), and its outcome one UPDATE; both, and ``get``, go through ``ProcessEngine.run_lean``
(one round trip, no SQLAlchemy execution). Anything else about a claim (a job not ready, one
stored for another queue, a batch) takes one transaction.
"""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from adapter.dead_letter import DeadLetter
from adapter.errors import DuplicateJobError, StoreError, WrongQueueError
from adapter.job import (
    Job,
    JobState,
    Transition,
    utcnow,
)
from adapter.listing import JobList, JobListOptions
from adapter.store.base import Claimed, JobStore
from adapter.store.changes import ChangeListener, Watch
from adapter.store.schedules import ScheduleStore
from adapter.store.sql.engine import ProcessEngine
from adapter.store.sql.migrate import lock_unique_key, upgrade_schema
from adapter.store.sql.query import JobListQuery
from adapter.store.sql.statements import (
    CLAIM,
    CLAIM_OR_RECORD,
    DELETE,
    GET,
    INSERT,
    INSERT_ABSENT,
    MARK_DUE,
    REPLACE_WAITING,
    SET_PROGRESS,
    TAKE_DUE,
    UPDATE,
    WAITING_WITH_KEY,
    claim_in,
    claim_params,
    job_of_json,
    job_of_row,
    naive,
    row_of,
    started_row,
    transition_statement,
    update_params,
)
from adapter.store.sql.tables import SCHEMA_VERSION, dead_letters, jobs, meta, metadata

logger = logging.getLogger(__name__)


class SqlJobStore(JobStore):
    """Job store in one SQL table."""

    def __init__(self, url: str) -> None:
        self._db = ProcessEngine(url, "job store", metadata, self._on_open)
        self.url = self._db.url
        self._changes: ChangeListener | None = None
        if self._db.sa_url.get_backend_name() == "postgresql":
            from adapter.store.sql.changes import change_listener

            self._changes = change_listener(self._db.sa_url, self.url, job_of_json)

    @functools.cached_property
    def schedules(self) -> ScheduleStore:
        from adapter.store.sql.schedules import SqlScheduleStore

        return SqlScheduleStore(self._db.sa_url.render_as_string(hide_password=False))

    def watch(self, job_id: str) -> Watch:
        if self._changes is None:
            return super().watch(job_id)
        self._db.get()  # the table and its notifying trigger exist before anyone listens
        return self._changes.watch(job_id)

    @staticmethod
    def _on_open(conn: Connection) -> None:
        """Bring the tables up to date; on PostgreSQL, create the trigger that notifies changes."""
        upgrade_schema(conn, metadata, meta, SCHEMA_VERSION)  # first: it may lock adapter_job
        if conn.dialect.name == "postgresql":
            from adapter.store.sql.changes import create_change_trigger

            create_change_trigger(conn)

    def _run(self, statement: Any, params: Mapping[str, Any] | None = None) -> Any:
        return self._db.run(statement, params)

    def insert(self, job: Job) -> None:
        try:
            self._db.run_lean(INSERT, row_of(job))
        except sa.exc.IntegrityError as err:
            raise DuplicateJobError(f"a job with id {job.id!r} already exists") from err

    def insert_many(self, new_jobs: Sequence[Job]) -> None:
        if not new_jobs:
            return
        statement = INSERT_ABSENT[self._db.get().dialect.name]
        if len(new_jobs) == 1:  # an add's batch, mostly: one statement, held the least time
            self._db.run_lean(statement, row_of(new_jobs[0]))  # a worker's claim may wait on it
            return
        with self._db.begin() as conn:
            conn.execute(statement, [row_of(job) for job in new_jobs])

    def get(self, job_id: str) -> Job | None:
        rows, _count = self._db.run_lean(GET, {"job_id": job_id})
        return job_of_row(rows[0]) if rows else None

    def claim(self, job: Job, busy_after: datetime | None = None) -> Job | None:
        found = self.claim_many([job], busy_after)[0]
        if isinstance(found, WrongQueueError):
            raise found
        return found

    def claim_many(self, jobs: Sequence[Job], busy_after: datetime | None = None) -> list[Claimed]:
        now, stale_before = naive(utcnow()), naive(busy_after) or datetime.max
        if len(jobs) == 1:  # a worker's claim: one statement in the usual case
            params = claim_params(jobs[0], now, stale_before)
            statement: Any = CLAIM
            postgres = self._db.get().dialect.name == "postgresql"
            started = started_row(jobs[0], now) if postgres else None
            if started is not None:  # PostgreSQL: the job is recorded if its add's batch is late
                statement = CLAIM_OR_RECORD
                params.update({f"row_{name}": value for name, value in started.items()})
            rows, _count = self._db.run_lean(statement, params)
            if rows:
                return [job_of_row(rows[0])]
        # Rows are locked in id order, so two batches sharing jobs cannot deadlock.
        order = sorted(range(len(jobs)), key=lambda i: str(jobs[i].id))
        found: list[Claimed] = [None] * len(jobs)
        insert_absent = INSERT_ABSENT[self._db.get().dialect.name]
        with self._db.begin() as conn:
            for i in order:
                found[i] = claim_in(conn, insert_absent, jobs[i], now, stale_before, len(jobs) > 1)
        return found

    def now(self) -> datetime:
        if self._db.get().dialect.name != "postgresql":
            return super().now()  # SQLite: a file of this machine, whose clock this is
        found: datetime = self._run(sa.select(sa.func.timezone("UTC", sa.func.now()))).scalar_one()
        return found.replace(tzinfo=UTC)

    def take_due(self, now: datetime, limit: int) -> list[Job]:
        with self._db.begin() as conn:
            rows = conn.execute(TAKE_DUE, {"now": naive(now), "limit": limit}).all()
        return sorted((job_of_row(row) for row in rows), key=lambda job: job.ready_at or now)

    def mark_due(self, job_id: str, ready_at: datetime) -> Job | None:
        params = {"job_id": job_id, "new_ready_at": naive(ready_at), "now": naive(utcnow())}
        row = self._run(MARK_DUE, params).first()
        return None if row is None else job_of_row(row)

    def add_unique(self, job: Job, *, replace: bool) -> tuple[Job, bool]:
        key = {"key_queue": job.queue_name, "key": job.unique_key}
        with self._db.begin() as conn:
            lock_unique_key(conn, meta, f"{job.queue_name}:{job.unique_key}")
            if replace:
                params = {
                    **key,
                    "new_data": json.dumps(job.data),
                    "new_ready_at": naive(job.ready_at),
                }
                row = conn.execute(REPLACE_WAITING, {**params, "now": naive(utcnow())}).first()
            else:
                row = conn.execute(WAITING_WITH_KEY, key).first()
            if row is not None:
                return job_of_row(row), False
            try:
                conn.execute(INSERT, row_of(job))
            except sa.exc.IntegrityError as err:
                raise DuplicateJobError(f"a job with id {job.id!r} already exists") from err
        return job, True

    def set_progress(self, job_id: str, progress: float) -> bool:
        params = {"job_id": job_id, "progress": progress, "now": naive(utcnow())}
        return bool(self._run(SET_PROGRESS, params).rowcount)

    def update(self, job: Job) -> bool:
        return self.update_many([job])[0]

    def update_many(self, jobs: Sequence[Job]) -> list[bool]:
        rows = [update_params(job) for job in jobs]
        if len(rows) == 1:  # a worker's outcome: one statement
            return [bool(self._db.run_lean(UPDATE, rows[0])[1])]
        done: dict[str, bool] = {}
        with self._db.begin() as conn:
            for row in sorted(rows, key=lambda row: str(row["job_id"])):  # id order: no deadlock
                done[str(row["job_id"])] = bool(conn.execute(UPDATE, row).rowcount)
        return [done[str(row["job_id"])] for row in rows]

    def queue_counts(self) -> dict[str, dict[JobState, int]]:
        statement = sa.select(jobs.c.queue_name, jobs.c.state, sa.func.count()).group_by(
            jobs.c.queue_name, jobs.c.state
        )
        counts: dict[str, dict[JobState, int]] = {}
        for queue_name, state, count in self._run(statement):
            counts.setdefault(queue_name, dict.fromkeys(JobState, 0))[JobState(state)] = count
        return counts

    def _apply(
        self,
        transition: Transition,
        job_ids: list[str] | None,
        stale_before: datetime | None,
        given: dict[str, Any],
    ) -> list[Job]:
        params: dict[str, Any] = {
            "now": naive(utcnow()),
            "stale_before": naive(stale_before) or datetime.min,
            **{f"given_{name}": value for name, value in given.items()},
        }
        if job_ids is not None:
            params["job_ids"] = job_ids
        statement = transition_statement(transition, "many" if job_ids is not None else "all")
        with self._db.begin() as conn:
            return [job_of_row(row) for row in conn.execute(statement, params).all()]

    def record_dead_letter(self, letter: DeadLetter) -> None:
        row = letter.model_dump()
        row.update(received_at=naive(letter.received_at), headers=json.dumps(letter.headers))
        oldest_kept = (
            sa.select(dead_letters.c.received_at)
            .order_by(dead_letters.c.received_at.desc())
            .offset(self.max_dead_letters - 1)
            .limit(1)
            .scalar_subquery()
        )
        with self._db.begin() as conn:
            conn.execute(dead_letters.insert(), row)
            conn.execute(dead_letters.delete().where(dead_letters.c.received_at < oldest_kept))

    def dead_letters(self, take: int = 100) -> list[DeadLetter]:
        statement = (
            dead_letters.select()
            .order_by(dead_letters.c.received_at.desc(), dead_letters.c.id)
            .limit(take)
        )
        return [
            DeadLetter.model_validate(
                {
                    **row._asdict(),
                    "received_at": row.received_at.replace(tzinfo=UTC),
                    "headers": json.loads(row.headers),
                }
            )
            for row in self._run(statement)
        ]

    def cancelled_among(self, job_ids: Sequence[str]) -> set[str]:
        statement = sa.select(jobs.c.id).where(
            jobs.c.id.in_(list(job_ids)), jobs.c.state == JobState.CANCELLED.value
        )
        return {row.id for row in self._run(statement)}

    def delete(self, job_id: str) -> None:
        self._run(DELETE, {"job_id": job_id})

    def close(self) -> None:
        if self._changes is not None:
            self._changes.close()
        self._db.dispose()

    def _find_many(self, options: JobListOptions) -> JobList:
        query = JobListQuery(jobs, self._db.get().dialect.name, utcnow())
        count, page = query.count(options), query.page(options)
        try:
            with self._db.begin() as conn:
                total = int(conn.execute(count).scalar_one())
                rows = conn.execute(page).all()
        except (sa.exc.DBAPIError, StoreError) as err:  # the engine wraps OperationalError
            cause = err if isinstance(err, sa.exc.DBAPIError) else err.__cause__
            refused = None
            if isinstance(cause, sa.exc.DBAPIError):
                refused = query.refused(cause, options)
            if refused is None:
                raise
            raise refused from err
        return JobList(items=[job_of_row(row) for row in rows], total_items=total)

    def find_many_by_id(self, ids: Sequence[str]) -> list[Job]:
        wanted = list(dict.fromkeys(ids))
        if not wanted:
            return []
        found = {
            row.id: job_of_row(row) for row in self._run(jobs.select().where(jobs.c.id.in_(wanted)))
        }
        return [found[job_id] for job_id in wanted if job_id in found]

    def remove_settled(
        self, queue_names: Sequence[str] | None = None, older_than: datetime | None = None
    ) -> int:
        cutoff = utcnow() if older_than is None else older_than
        if cutoff.tzinfo is None:
            cutoff = cutoff.replace(tzinfo=UTC)  # naive times are UTC, as everywhere in the adapter
        statement = jobs.delete().where(
            jobs.c.is_settled.is_(True), jobs.c.settled_at < naive(cutoff)
        )
        if queue_names:
            statement = statement.where(jobs.c.queue_name.in_(list(queue_names)))
        return int(self._run(statement).rowcount)
