"""The statements the SQL store runs, built once, and the rows they read and write.

Statements are SQLAlchemy Core, built at import (building them per call cost more than running
them on SQLite); ``transition_statement`` builds each transition's UPDATE on first use. A job
becomes a row with ``row_of`` and comes back with ``job_of_row`` (or ``job_of_json``, from a
notification's payload); times are stored naive in UTC (``naive``) and returned aware
(``aware``).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection

from adapter.job import (
    SETTLED_STATES,
    START,
    Job,
    JobState,
    Transition,
    utcnow,
)
from adapter.store.base import MUTABLE_FIELDS, Claimed, wrong_queue
from adapter.store.scheduling import WAITING_STATES
from adapter.store.sql.tables import jobs

logger = logging.getLogger(__name__)

UNSETTLED = jobs.c.settled_at.is_(None)
_job_id: sa.BindParameter[str] = sa.bindparam("job_id")
_now: sa.BindParameter[datetime] = sa.bindparam("now")
_unsettled_job = sa.and_(jobs.c.id == _job_id, UNSETTLED)
#: Columns ``update`` writes, guarded by ``settled_at IS NULL`` (plus the derived flag).
_MUTABLE = (*MUTABLE_FIELDS, "is_settled")
# Statements are built once: building them per call cost more than running them on SQLite.
INSERT = jobs.insert()
#: ``insert_many`` per dialect: a row whose id is already stored is skipped, never overwritten.
INSERT_ABSENT = {
    "sqlite": sqlite.insert(jobs).on_conflict_do_nothing(index_elements=[jobs.c.id]),
    "postgresql": postgresql.insert(jobs).on_conflict_do_nothing(index_elements=[jobs.c.id]),
}
GET = jobs.select().where(jobs.c.id == _job_id)
_STORED_QUEUE = sa.select(jobs.c.queue_name).where(jobs.c.id == _job_id)
DELETE = jobs.delete().where(jobs.c.id == _job_id)
SET_PROGRESS = (
    jobs.update().where(_unsettled_job).values(progress=sa.bindparam("progress"), updated_at=_now)
)
UPDATE = (
    jobs.update()
    .where(_unsettled_job)
    .values({name: sa.bindparam(f"new_{name}") for name in _MUTABLE})
)
#: Statements of ``apply`` by (transition, which jobs), built on first use.
_TRANSITIONS: dict[tuple[Transition, str], Any] = {}


def transition_statement(transition: Transition, which: str) -> Any:
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
    """The conditions and the new values of ``transition_statement``'s UPDATE."""
    allowed: list[sa.ColumnElement[bool]] = [_state_in(transition.sources)]
    if transition.stale_sources:
        stale = _state_in(transition.stale_sources)
        allowed.append(sa.and_(stale, jobs.c.updated_at < sa.bindparam("stale_before")))
    where = [UNSETTLED, sa.or_(*allowed)]
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
CLAIM = jobs.update().where(*_claim_where).values(_claim_values).returning(*jobs.c)
#: PostgreSQL's claim of a job ready by its message, in one statement: ``CLAIM`` when it is
#: stored, else the job recorded RUNNING from the message (``row_<column>``: ``started_row``).
#: A row an add is recording meanwhile is waited for, then claimed. No row: the slow path.
CLAIM_OR_RECORD = (
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
TAKE_DUE = (
    jobs.update()
    .where(
        jobs.c.id.in_(
            sa.select(jobs.c.id)
            .where(jobs.c.due_at <= _now, _waiting, UNSETTLED)
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
MARK_DUE = (
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
    UNSETTLED,
)
WAITING_WITH_KEY = jobs.select().where(_with_key).limit(1)
#: Debounce: the waiting job with the key takes the new data and ready_at, due-marked.
REPLACE_WAITING = (
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


def claim_params(job: Job, now: datetime | None, stale_before: datetime) -> dict[str, Any]:
    """The parameters of ``CLAIM`` (and of the statements of its slow path) for ``job``."""
    return {
        "job_id": job.id,
        "claim_queue": job.queue_name,
        "now": now,
        "stale_before": stale_before,
    }


def started_row(job: Job, now: datetime | None) -> dict[str, Any] | None:
    """The row of ``job`` (from its message) started now, or None unless ready to start."""
    started = job.model_copy()
    aware_now = None if now is None else now.replace(tzinfo=UTC)
    if job.ready_at is not None and aware_now is not None and job.ready_at > aware_now:
        return None
    if started.is_settled or not started.apply(START, now=aware_now):
        return None
    row = row_of(started)
    row.update(updated_at=now, due_at=None)
    return row


def claim_in(
    conn: Connection,
    insert_absent: Any,
    job: Job,
    now: datetime | None,
    stale_before: datetime,
    first_try: bool,
) -> Claimed:
    """Claim one job inside the transaction of ``conn`` (``first_try``: not tried alone yet)."""
    params = claim_params(job, now, stale_before)
    row = conn.execute(CLAIM, params).first() if first_try else None
    if row is None:
        # Not stored yet (its add's batch is late), or stored by a transaction committing
        # now: the insert waits for it, and the UPDATE after it sees the row (READ COMMITTED).
        if conn.execute(insert_absent, row_of(job)).rowcount:
            logger.info("job %s was not in the store yet; recorded it now", job.id)
        row = conn.execute(CLAIM, params).first()
    if row is None:  # settled, running elsewhere, not ready, or stored for another queue
        stored = conn.execute(_STORED_QUEUE, params).scalar()
        if stored is not None and stored != job.queue_name:
            return wrong_queue(job, stored)
        conn.execute(_MARK_EARLY, params)  # not started as it is not ready yet: due again
        return None
    return job_of_row(row)


def naive(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    return value.astimezone(UTC).replace(tzinfo=None)


def update_params(job: Job) -> dict[str, Any]:
    """The parameters of ``UPDATE`` writing ``job``'s mutable fields."""
    row = row_of(job)
    params = {f"new_{name}": row[name] for name in _MUTABLE}
    params["job_id"] = row["id"]
    return params


def row_of(job: Job) -> dict[str, Any]:
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
        "created_at": naive(job.created_at),
        "started_at": naive(job.started_at),
        "settled_at": naive(job.settled_at),
        "updated_at": naive(utcnow()),
        "is_settled": job.is_settled,
        "ready_at": naive(job.ready_at),
        "priority": job.priority,
        "unique_key": job.unique_key,
        "retried_from": job.retried_from,
        "timeout": job.timeout,
        "due_at": naive(job.ready_at),
    }


def job_of_row(row: Any) -> Job:
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
        started_at=aware(row.started_at),
        settled_at=aware(row.settled_at),
        ready_at=aware(row.ready_at),
        priority=row.priority,
        unique_key=row.unique_key,
        retried_from=row.retried_from,
        timeout=row.timeout,
    )


#: The columns that hold times: ``row_to_json`` gives them as ISO-8601 text.
_TIME_COLUMNS = [column.name for column in jobs.c if isinstance(column.type, sa.DateTime)]


def job_of_json(fields: Mapping[str, Any]) -> Job:
    """Return the job of a row as PostgreSQL's ``row_to_json`` writes it (a notification's)."""
    row = dict(fields)
    for name in _TIME_COLUMNS:
        if row[name] is not None:
            row[name] = datetime.fromisoformat(row[name])
    return job_of_row(SimpleNamespace(**row))


def aware(value: datetime | None) -> datetime | None:
    return None if value is None else value.replace(tzinfo=UTC)
