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
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection

from adapter.dead_letter import DeadLetter
from adapter.errors import DuplicateJobError, StoreError, WrongQueueError
from adapter.job import (
    MAX_UNIQUE_KEY_LENGTH,
    SETTLED_STATES,
    START,
    Job,
    JobState,
    Transition,
    utcnow,
)
from adapter.listing import JobList, JobListOptions
from adapter.store.base import MUTABLE_FIELDS, Claimed, JobStore, wrong_queue
from adapter.store.changes import ChangeListener, Watch
from adapter.store.schedules import ScheduleStore
from adapter.store.scheduling import WAITING_STATES
from adapter.store.sql.engine import ProcessEngine
from adapter.store.sql.migrate import lock_unique_key, upgrade_schema
from adapter.store.sql.query import JobListQuery

logger = logging.getLogger(__name__)

#: Version of the table layout below. Columns and indexes added since are not a new version:
#: an older table gains them on open (``adapter.store.sql.migrate``) and older releases keep
#: working beside it; bump it only for a layout they cannot use.
SCHEMA_VERSION = 1

metadata = sa.MetaData()
jobs = sa.Table(
    "adapter_job",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("queue_name", sa.String(200), nullable=False),
    sa.Column("data", sa.Text, nullable=True),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("progress", sa.Float, nullable=False, default=0),
    sa.Column("result", sa.Text, nullable=True),
    sa.Column("error", sa.Text, nullable=True),
    sa.Column("retries", sa.Integer, nullable=False, default=0),
    sa.Column("attempts", sa.Integer, nullable=False, default=0),
    sa.Column("created_at", sa.DateTime, nullable=False),
    sa.Column("started_at", sa.DateTime, nullable=True),
    sa.Column("settled_at", sa.DateTime, nullable=True),
    sa.Column("updated_at", sa.DateTime, nullable=False),
    sa.Column("is_settled", sa.Boolean, nullable=False, default=False),
    # Added after the first release: a table made before gains them on open (migrate.py).
    sa.Column("ready_at", sa.DateTime, nullable=True),
    sa.Column("priority", sa.Integer, nullable=False, server_default="0"),
    sa.Column("unique_key", sa.String(MAX_UNIQUE_KEY_LENGTH), nullable=True),
    sa.Column("retried_from", sa.String(64), nullable=True),
    sa.Column("timeout", sa.Float, nullable=True),
    # Internal, not a job field: when the promoter publishes the job (adapter.store.scheduling).
    sa.Column("due_at", sa.DateTime, nullable=True),
    sa.Index("ix_adapter_job_queue_state_created", "queue_name", "state", "created_at"),
    sa.Index("ix_adapter_job_created", "created_at"),
    sa.Index("ix_adapter_job_state_ready", "state", "ready_at"),
    sa.Index("ix_adapter_job_retried_from", "retried_from"),
    sa.Index("ix_adapter_job_due", "due_at"),
    sa.Index("ix_adapter_job_unique", "queue_name", "unique_key"),
)
dead_letters = sa.Table(
    "adapter_dead_letter",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("received_at", sa.DateTime, nullable=False, index=True),
    sa.Column("queue", sa.String(255), nullable=False),
    sa.Column("task_name", sa.String(255), nullable=True),
    sa.Column("task_id", sa.String(255), nullable=True),
    sa.Column("content_type", sa.String(255), nullable=True),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("body", sa.Text, nullable=False),
    sa.Column("headers", sa.Text, nullable=False),
)
meta = sa.Table(
    "adapter_meta",
    metadata,
    sa.Column("key", sa.String(64), primary_key=True),
    sa.Column("value", sa.String(200), nullable=False),
)
_unsettled = jobs.c.settled_at.is_(None)


class SqlJobStore(JobStore):
    """Job store in one SQL table."""

    def __init__(self, url: str) -> None:
        self._db = ProcessEngine(url, "job store", metadata, self._on_open)
        self.url = self._db.url
        self._changes: ChangeListener | None = None
        if self._db.sa_url.get_backend_name() == "postgresql":
            from adapter.store.sql.changes import change_listener

            self._changes = change_listener(self._db.sa_url, self.url, _job_of_json)

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
            self._db.run_lean(_INSERT, _row(job))
        except sa.exc.IntegrityError as err:
            raise DuplicateJobError(f"a job with id {job.id!r} already exists") from err

    def insert_many(self, new_jobs: Sequence[Job]) -> None:
        if not new_jobs:
            return
        statement = _INSERT_ABSENT[self._db.get().dialect.name]
        if len(new_jobs) == 1:  # an add's batch, mostly: one statement, held the least time
            self._db.run_lean(statement, _row(new_jobs[0]))  # a worker's claim may wait on it
            return
        with self._db.begin() as conn:
            conn.execute(statement, [_row(job) for job in new_jobs])

    def get(self, job_id: str) -> Job | None:
        rows, _count = self._db.run_lean(_GET, {"job_id": job_id})
        return _job(rows[0]) if rows else None

    def claim(self, job: Job, busy_after: datetime | None = None) -> Job | None:
        found = self.claim_many([job], busy_after)[0]
        if isinstance(found, WrongQueueError):
            raise found
        return found

    def claim_many(self, jobs: Sequence[Job], busy_after: datetime | None = None) -> list[Claimed]:
        now, stale_before = _naive(utcnow()), _naive(busy_after) or datetime.max
        if len(jobs) == 1:  # a worker's claim: one statement in the usual case
            params = _claim_params(jobs[0], now, stale_before)
            statement: Any = _CLAIM
            postgres = self._db.get().dialect.name == "postgresql"
            started = _started_row(jobs[0], now) if postgres else None
            if started is not None:  # PostgreSQL: the job is recorded if its add's batch is late
                statement = _CLAIM_OR_RECORD
                params.update({f"row_{name}": value for name, value in started.items()})
            rows, _count = self._db.run_lean(statement, params)
            if rows:
                return [_job(rows[0])]
        # Rows are locked in id order, so two batches sharing jobs cannot deadlock.
        order = sorted(range(len(jobs)), key=lambda i: str(jobs[i].id))
        found: list[Claimed] = [None] * len(jobs)
        insert_absent = _INSERT_ABSENT[self._db.get().dialect.name]
        with self._db.begin() as conn:
            for i in order:
                found[i] = _claim_in(conn, insert_absent, jobs[i], now, stale_before, len(jobs) > 1)
        return found

    def now(self) -> datetime:
        if self._db.get().dialect.name != "postgresql":
            return super().now()  # SQLite: a file of this machine, whose clock this is
        found: datetime = self._run(sa.select(sa.func.timezone("UTC", sa.func.now()))).scalar_one()
        return found.replace(tzinfo=UTC)

    def take_due(self, now: datetime, limit: int) -> list[Job]:
        with self._db.begin() as conn:
            rows = conn.execute(_TAKE_DUE, {"now": _naive(now), "limit": limit}).all()
        return sorted((_job(row) for row in rows), key=lambda job: job.ready_at or now)

    def mark_due(self, job_id: str, ready_at: datetime) -> Job | None:
        params = {"job_id": job_id, "new_ready_at": _naive(ready_at), "now": _naive(utcnow())}
        row = self._run(_MARK_DUE, params).first()
        return None if row is None else _job(row)

    def add_unique(self, job: Job, *, replace: bool) -> tuple[Job, bool]:
        key = {"key_queue": job.queue_name, "key": job.unique_key}
        with self._db.begin() as conn:
            lock_unique_key(conn, meta, f"{job.queue_name}:{job.unique_key}")
            if replace:
                params = {
                    **key,
                    "new_data": json.dumps(job.data),
                    "new_ready_at": _naive(job.ready_at),
                }
                row = conn.execute(_REPLACE_WAITING, {**params, "now": _naive(utcnow())}).first()
            else:
                row = conn.execute(_WAITING_WITH_KEY, key).first()
            if row is not None:
                return _job(row), False
            try:
                conn.execute(_INSERT, _row(job))
            except sa.exc.IntegrityError as err:
                raise DuplicateJobError(f"a job with id {job.id!r} already exists") from err
        return job, True

    def set_progress(self, job_id: str, progress: float) -> bool:
        params = {"job_id": job_id, "progress": progress, "now": _naive(utcnow())}
        return bool(self._run(_SET_PROGRESS, params).rowcount)

    def update(self, job: Job) -> bool:
        return self.update_many([job])[0]

    def update_many(self, jobs: Sequence[Job]) -> list[bool]:
        rows = [_update_params(job) for job in jobs]
        if len(rows) == 1:  # a worker's outcome: one statement
            return [bool(self._db.run_lean(_UPDATE, rows[0])[1])]
        done: dict[str, bool] = {}
        with self._db.begin() as conn:
            for row in sorted(rows, key=lambda row: str(row["job_id"])):  # id order: no deadlock
                done[str(row["job_id"])] = bool(conn.execute(_UPDATE, row).rowcount)
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
            "now": _naive(utcnow()),
            "stale_before": _naive(stale_before) or datetime.min,
            **{f"given_{name}": value for name, value in given.items()},
        }
        if job_ids is not None:
            params["job_ids"] = job_ids
        statement = _transition_statement(transition, "many" if job_ids is not None else "all")
        with self._db.begin() as conn:
            return [_job(row) for row in conn.execute(statement, params).all()]

    def record_dead_letter(self, letter: DeadLetter) -> None:
        row = letter.model_dump()
        row.update(received_at=_naive(letter.received_at), headers=json.dumps(letter.headers))
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
        self._run(_DELETE, {"job_id": job_id})

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
        return JobList(items=[_job(row) for row in rows], total_items=total)

    def find_many_by_id(self, ids: Sequence[str]) -> list[Job]:
        wanted = list(dict.fromkeys(ids))
        if not wanted:
            return []
        found = {row.id: _job(row) for row in self._run(jobs.select().where(jobs.c.id.in_(wanted)))}
        return [found[job_id] for job_id in wanted if job_id in found]

    def remove_settled(
        self, queue_names: Sequence[str] | None = None, older_than: datetime | None = None
    ) -> int:
        cutoff = utcnow() if older_than is None else older_than
        if cutoff.tzinfo is None:
            cutoff = cutoff.replace(tzinfo=UTC)  # naive times are UTC, as everywhere in the adapter
        statement = jobs.delete().where(
            jobs.c.is_settled.is_(True), jobs.c.settled_at < _naive(cutoff)
        )
        if queue_names:
            statement = statement.where(jobs.c.queue_name.in_(list(queue_names)))
        return int(self._run(statement).rowcount)


_job_id: sa.BindParameter[str] = sa.bindparam("job_id")
_now: sa.BindParameter[datetime] = sa.bindparam("now")
_unsettled_job = sa.and_(jobs.c.id == _job_id, _unsettled)
#: Columns ``update`` writes, guarded by ``settled_at IS NULL`` (plus the derived flag).
_MUTABLE = (*MUTABLE_FIELDS, "is_settled")
# Statements are built once: building them per call cost more than running them on SQLite.
_INSERT = jobs.insert()
#: ``insert_many`` per dialect: a row whose id is already stored is skipped, never overwritten.
_INSERT_ABSENT = {
    "sqlite": sqlite.insert(jobs).on_conflict_do_nothing(index_elements=[jobs.c.id]),
    "postgresql": postgresql.insert(jobs).on_conflict_do_nothing(index_elements=[jobs.c.id]),
}
_GET = jobs.select().where(jobs.c.id == _job_id)
_STORED_QUEUE = sa.select(jobs.c.queue_name).where(jobs.c.id == _job_id)
_DELETE = jobs.delete().where(jobs.c.id == _job_id)
_SET_PROGRESS = (
    jobs.update().where(_unsettled_job).values(progress=sa.bindparam("progress"), updated_at=_now)
)
_UPDATE = (
    jobs.update()
    .where(_unsettled_job)
    .values({name: sa.bindparam(f"new_{name}") for name in _MUTABLE})
)
#: Statements of ``apply`` by (transition, which jobs), built on first use.
_TRANSITIONS: dict[tuple[Transition, str], Any] = {}


def _transition_statement(transition: Transition, which: str) -> Any:
    """The UPDATE that applies ``transition`` to the unsettled jobs it allows.

    ``which``: "one" (``:job_id``), "many" (``:job_ids``) or "all" (every job it allows).
    Parameters: ``now``, ``stale_before``, and ``given_<field>`` for its given fields.
    """
    key = (transition, which)
    if key in _TRANSITIONS:
        return _TRANSITIONS[key]
    where, values = _transition_parts(transition, which)
    statement = jobs.update().where(*where).values(values).returning(*jobs.c)
    _TRANSITIONS[key] = statement
    return statement


def _transition_parts(
    transition: Transition, which: str
) -> tuple[list[sa.ColumnElement[bool]], dict[str, Any]]:
    """The conditions and the new values of ``_transition_statement``'s UPDATE."""
    allowed: list[sa.ColumnElement[bool]] = [_state_in(transition.sources)]
    if transition.stale_sources:
        stale = _state_in(transition.stale_sources)
        allowed.append(sa.and_(stale, jobs.c.updated_at < sa.bindparam("stale_before")))
    where = [_unsettled, sa.or_(*allowed)]
    if which == "one":
        where.append(jobs.c.id == _job_id)
    elif which == "many":
        where.append(jobs.c.id.in_(sa.bindparam("job_ids", expanding=True)))
    values: dict[str, Any] = {**transition.values, "updated_at": _now}
    values.update(dict.fromkeys(transition.stamps, _now))
    values.update({name: sa.bindparam(f"given_{name}") for name in transition.given})
    if transition.counts_attempt:
        values["attempts"] = jobs.c.attempts + 1
    if transition.state is not None:
        values["state"] = transition.state.value
        values["is_settled"] = transition.state in SETTLED_STATES
    return where, values


def _state_in(states: Iterable[JobState]) -> sa.ColumnElement[bool]:
    """``state IN (...)`` as plain parameters (no expanding one: ``run_lean`` sends it as is)."""
    return jobs.c.state.in_([sa.literal(state.value) for state in sorted(states)])


_claim_where, _claim_values = _transition_parts(START, "one")
_claim_where += [
    jobs.c.queue_name == sa.bindparam("claim_queue"),
    sa.or_(jobs.c.ready_at.is_(None), jobs.c.ready_at <= _now),
]
_claim_values["due_at"] = None
#: ``START`` of one job, only if it is stored for the queue the message names and is ready;
#: it clears the job's due mark.
_CLAIM = jobs.update().where(*_claim_where).values(_claim_values).returning(*jobs.c)
#: PostgreSQL's claim of a job ready by its message, in one statement: ``_CLAIM`` when it is
#: stored, else the job recorded RUNNING from the message (``row_<column>``: ``_started_row``).
#: A row an add is recording meanwhile is waited for, then claimed. No row: the slow path.
_CLAIM_OR_RECORD = (
    postgresql.insert(jobs)
    .values(
        {column.name: sa.bindparam(f"row_{column.name}", type_=column.type) for column in jobs.c}
    )
    .on_conflict_do_update(
        index_elements=[jobs.c.id], set_=_claim_values, where=sa.and_(*_claim_where)
    )
    .returning(*jobs.c)
)


_waiting = jobs.c.state.in_(sorted(state.value for state in WAITING_STATES))
#: Due-mark again a waiting job a claim did not start because its ``ready_at`` is later.
_MARK_EARLY = (
    jobs.update()
    .where(_unsettled_job, _waiting, jobs.c.ready_at > _now)
    .values(due_at=jobs.c.ready_at)
)
#: Take the due marks of the due waiting jobs, earliest first (each row once, however many
#: workers take at once: PostgreSQL skips the rows another is taking).
_TAKE_DUE = (
    jobs.update()
    .where(
        jobs.c.id.in_(
            sa.select(jobs.c.id)
            .where(jobs.c.due_at <= _now, _waiting, _unsettled)
            .order_by(jobs.c.due_at)
            .limit(sa.bindparam("limit"))
            .with_for_update(skip_locked=True)
            .scalar_subquery()
        ),
        jobs.c.due_at <= _now,
    )
    .values(due_at=None)
    .returning(*jobs.c)
)
_MARK_DUE = (
    jobs.update()
    .where(_unsettled_job, _waiting)
    .values(
        ready_at=sa.bindparam("new_ready_at"), due_at=sa.bindparam("new_ready_at"), updated_at=_now
    )
    .returning(*jobs.c)
)
_with_key = sa.and_(
    jobs.c.queue_name == sa.bindparam("key_queue"),
    jobs.c.unique_key == sa.bindparam("key"),
    _waiting,
    _unsettled,
)
_WAITING_WITH_KEY = jobs.select().where(_with_key).limit(1)
#: Debounce: the waiting job with the key takes the new data and ready_at, due-marked.
_REPLACE_WAITING = (
    jobs.update()
    .where(jobs.c.id.in_(sa.select(jobs.c.id).where(_with_key).limit(1).scalar_subquery()))
    .values(
        data=sa.bindparam("new_data"),
        ready_at=sa.bindparam("new_ready_at"),
        due_at=sa.bindparam("new_ready_at"),
        updated_at=_now,
    )
    .returning(*jobs.c)
)


def _claim_params(job: Job, now: datetime | None, stale_before: datetime) -> dict[str, Any]:
    """The parameters of ``_CLAIM`` (and of the statements of its slow path) for ``job``."""
    return {
        "job_id": job.id,
        "claim_queue": job.queue_name,
        "now": now,
        "stale_before": stale_before,
    }


def _started_row(job: Job, now: datetime | None) -> dict[str, Any] | None:
    """The row of ``job`` (from its message) started now, or None unless ready to start."""
    started = job.model_copy()
    aware_now = None if now is None else now.replace(tzinfo=UTC)
    if job.ready_at is not None and aware_now is not None and job.ready_at > aware_now:
        return None
    if started.is_settled or not started.apply(START, now=aware_now):
        return None
    row = _row(started)
    row.update(updated_at=now, due_at=None)
    return row


def _claim_in(
    conn: Connection,
    insert_absent: Any,
    job: Job,
    now: datetime | None,
    stale_before: datetime,
    first_try: bool,
) -> Claimed:
    """Claim one job inside the transaction of ``conn`` (``first_try``: not tried alone yet)."""
    params = _claim_params(job, now, stale_before)
    row = conn.execute(_CLAIM, params).first() if first_try else None
    if row is None:
        # Not stored yet (its add's batch is late), or stored by a transaction committing
        # now: the insert waits for it, and the UPDATE after it sees the row (READ COMMITTED).
        if conn.execute(insert_absent, _row(job)).rowcount:
            logger.info("job %s was not in the store yet; recorded it now", job.id)
        row = conn.execute(_CLAIM, params).first()
    if row is None:  # settled, running elsewhere, not ready, or stored for another queue
        stored = conn.execute(_STORED_QUEUE, params).scalar()
        if stored is not None and stored != job.queue_name:
            return wrong_queue(job, stored)
        conn.execute(_MARK_EARLY, params)  # not started as it is not ready yet: due again
        return None
    return _job(row)


def _naive(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    return value.astimezone(UTC).replace(tzinfo=None)


def _update_params(job: Job) -> dict[str, Any]:
    """The parameters of ``_UPDATE`` writing ``job``'s mutable fields."""
    row = _row(job)
    params = {f"new_{name}": row[name] for name in _MUTABLE}
    params["job_id"] = row["id"]
    return params


def _row(job: Job) -> dict[str, Any]:
    return {
        "id": job.id,
        "queue_name": job.queue_name,
        "data": json.dumps(job.data),
        "state": job.state.value,
        "progress": job.progress,
        "result": json.dumps(job.result),
        "error": None if job.error is None else str(job.error),
        "retries": job.retries,
        "attempts": job.attempts,
        "created_at": _naive(job.created_at),
        "started_at": _naive(job.started_at),
        "settled_at": _naive(job.settled_at),
        "updated_at": _naive(utcnow()),
        "is_settled": job.is_settled,
        "ready_at": _naive(job.ready_at),
        "priority": job.priority,
        "unique_key": job.unique_key,
        "retried_from": job.retried_from,
        "timeout": job.timeout,
        "due_at": _naive(job.ready_at),
    }


def _job(row: Any) -> Job:
    progress = row.progress
    return Job.model_construct(
        id=row.id,
        queue_name=row.queue_name,
        data=None if row.data is None else json.loads(row.data),
        state=JobState(row.state),
        progress=int(progress) if float(progress).is_integer() else progress,
        result=None if row.result is None else json.loads(row.result),
        error=row.error,
        retries=row.retries,
        attempts=row.attempts,
        created_at=row.created_at.replace(tzinfo=UTC),
        started_at=_aware(row.started_at),
        settled_at=_aware(row.settled_at),
        ready_at=_aware(row.ready_at),
        priority=row.priority,
        unique_key=row.unique_key,
        retried_from=row.retried_from,
        timeout=row.timeout,
    )


#: The columns that hold times: ``row_to_json`` gives them as ISO-8601 text.
_TIME_COLUMNS = [column.name for column in jobs.c if isinstance(column.type, sa.DateTime)]


def _job_of_json(fields: Mapping[str, Any]) -> Job:
    """Return the job of a row as PostgreSQL's ``row_to_json`` writes it (a notification's)."""
    row = dict(fields)
    for name in _TIME_COLUMNS:
        if row[name] is not None:
            row[name] = datetime.fromisoformat(row[name])
    return _job(SimpleNamespace(**row))


def _aware(value: datetime | None) -> datetime | None:
    return None if value is None else value.replace(tzinfo=UTC)
