"""Queue controls of the SQL job store (SQLite, PostgreSQL), on the job store's engine.

Tables, created on first use (``adapter_job`` is not changed, so no migration):
``adapter_queue`` (one row per controlled queue: ``paused``, ``concurrency``, ``rate_limit``),
``adapter_queue_slot`` (queue, job id, admission time: the concurrency slots) and
``adapter_queue_start`` (queue, time: recent starts, for the rate limit). ``admit`` locks
the queue's row with an UPDATE first (PostgreSQL: a row lock; SQLite: the write lock, as
``BEGIN IMMEDIATE``), then reads, counts, decides (``adapter.control.decide``) and records in
that one transaction (the gate calls it only for queues with controls). A slot's liveness
reads its job's row in ``adapter_job``.
"""

from __future__ import annotations

import contextlib
import weakref
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Engine

from adapter.control import ADMITTED, Admission, QueueControl, decide, slot_alive
from adapter.forksafe import ForkSafeLock
from adapter.store.queues import ControlChange, QueueStore
from adapter.store.sql.store import SqlJobStore
from adapter.store.sql.tables import jobs

metadata = sa.MetaData()
queues = sa.Table(
    "adapter_queue",
    metadata,
    sa.Column("name", sa.String(200), primary_key=True),
    sa.Column("paused", sa.Boolean, nullable=False, default=False),
    sa.Column("concurrency", sa.Integer, nullable=True),
    sa.Column("rate_limit", sa.String(32), nullable=True),
    sa.Column("version", sa.Integer, nullable=False, default=0),
)
slots = sa.Table(
    "adapter_queue_slot",
    metadata,
    sa.Column("queue_name", sa.String(200), primary_key=True),
    sa.Column("job_id", sa.String(64), primary_key=True),
    sa.Column("admitted_at", sa.DateTime, nullable=False),
)
starts = sa.Table(
    "adapter_queue_start",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("queue_name", sa.String(200), nullable=False),
    sa.Column("job_id", sa.String(64), nullable=False),
    sa.Column("at", sa.Float, nullable=False),
    sa.Index("ix_adapter_queue_start_queue_at", "queue_name", "at"),
)

_ROW = sa.select(queues).where(queues.c.name == sa.bindparam("queue"))
_LOCK = (
    queues.update()
    .where(queues.c.name == sa.bindparam("queue"))
    .values(version=queues.c.version + 1)
)
_SLOTS = (
    sa.select(
        slots.c.job_id,
        slots.c.admitted_at,
        jobs.c.state,
        jobs.c.updated_at,
        jobs.c.is_settled,
    )
    .select_from(slots.outerjoin(jobs, jobs.c.id == slots.c.job_id))
    .where(slots.c.queue_name == sa.bindparam("queue"))
)
#: A queue's row with the defaults, unless another process inserted it first.
_INSERT_ABSENT = {
    name: dialect.insert(queues)
    .values(name=sa.bindparam("queue"), paused=False, version=0)
    .on_conflict_do_nothing(index_elements=[queues.c.name])
    for name, dialect in (("sqlite", sqlite), ("postgresql", postgresql))
}
#: Engines whose tables exist (weak: an id() could be reused by a later engine).
_created: weakref.WeakSet[Engine] = weakref.WeakSet()
_created_lock = ForkSafeLock()


class SqlQueueStore(QueueStore):
    """Queue controls in SQL tables beside a ``SqlJobStore``."""

    def __init__(self, jobs_store: SqlJobStore) -> None:
        self._db = jobs_store._db

    def _engine(self) -> Engine:
        engine = self._db.get()
        if engine not in _created:
            with _created_lock:
                if engine not in _created:
                    with contextlib.suppress(sa.exc.DBAPIError):  # another process was first
                        metadata.create_all(engine, checkfirst=True)
                    _created.add(engine)
        return engine

    def control(self, queue_name: str) -> QueueControl:
        self._engine()
        row = self._db.run(_ROW, {"queue": queue_name}).first()
        return _control(row)

    def controls(self) -> dict[str, QueueControl]:
        self._engine()
        rows = self._db.run(sa.select(queues).order_by(queues.c.name)).all()
        found = {row.name: _control(row) for row in rows}
        return {name: control for name, control in found.items() if not control.is_default}

    def _update(self, queue_name: str, change: ControlChange) -> QueueControl:
        self._engine()
        with self._db.begin() as conn:
            if not conn.execute(_LOCK, {"queue": queue_name}).rowcount:
                conn.execute(_INSERT_ABSENT[conn.dialect.name], {"queue": queue_name})
                conn.execute(_LOCK, {"queue": queue_name})
            new = change(_control(conn.execute(_ROW, {"queue": queue_name}).first()))
            conn.execute(
                queues.update()
                .where(queues.c.name == queue_name)
                .values(paused=new.paused, concurrency=new.concurrency, rate_limit=new.rate_limit)
            )
        return new

    def admit(
        self, queue_name: str, job_id: str, now: datetime, alive_since: datetime
    ) -> Admission:
        self._engine()
        with self._db.begin() as conn:
            # the row's lock, held to the end of this transaction (none: nothing to control)
            if not conn.execute(_LOCK, {"queue": queue_name}).rowcount:
                return ADMITTED
            control = _control(conn.execute(_ROW, {"queue": queue_name}).first())
            if control.is_default:
                return ADMITTED
            return _admit_locked(conn, control, queue_name, job_id, now, alive_since)

    def started(
        self, queue_name: str, job_id: str, admitted_at: datetime, started_at: datetime
    ) -> None:
        self._engine()
        self._db.run(
            starts.update()
            .where(
                starts.c.queue_name == queue_name,
                starts.c.job_id == job_id,
                starts.c.at == admitted_at.timestamp(),
            )
            .values(at=started_at.timestamp())
        )

    def release(self, queue_name: str, job_id: str) -> None:
        self._engine()
        self._db.run(
            slots.delete().where(slots.c.queue_name == queue_name, slots.c.job_id == job_id)
        )


def _admit_locked(
    conn: Connection,
    control: QueueControl,
    queue_name: str,
    job_id: str,
    now: datetime,
    alive_since: datetime,
) -> Admission:
    """``admit`` with the queue's row locked: count, decide, record."""
    now_s = now.timestamp()
    rate = control.rate
    started, nth_newest_s = 0, None
    if rate is not None:
        conn.execute(
            starts.delete().where(
                starts.c.queue_name == queue_name, starts.c.at <= now_s - rate.counted_s
            )
        )
        in_queue = starts.c.queue_name == queue_name
        started = conn.execute(sa.select(sa.func.count()).where(in_queue)).scalar_one()
        if started >= rate.count:
            nth_newest_s = conn.execute(
                sa.select(starts.c.at)
                .where(in_queue)
                .order_by(starts.c.at.desc())
                .offset(rate.count - 1)
                .limit(1)
            ).scalar_one()
    live: set[str] = set()
    if control.concurrency is not None:
        since, naive_now, dead = _naive(alive_since), _naive(now), []
        for row in conn.execute(_SLOTS, {"queue": queue_name}):
            settled = bool(row.is_settled)
            at = row.admitted_at
            if slot_alive(row.state, row.updated_at, settled, at, alive_since=since, now=naive_now):
                live.add(row.job_id)
            else:
                dead.append(row.job_id)
        if dead:
            conn.execute(
                slots.delete().where(slots.c.queue_name == queue_name, slots.c.job_id.in_(dead))
            )
    answer = decide(
        control,
        now_s=now_s,
        started=started,
        nth_newest_s=nth_newest_s,
        live_slots=len(live - {job_id}),
        has_slot=job_id in live,
    )
    if answer.run and rate is not None:
        conn.execute(starts.insert().values(queue_name=queue_name, job_id=job_id, at=now_s))
    if answer.holds_slot:
        conn.execute(
            slots.insert().values(queue_name=queue_name, job_id=job_id, admitted_at=_naive(now))
        )
    return answer


def _control(row: Any) -> QueueControl:
    if row is None:
        return QueueControl()
    return QueueControl(
        paused=bool(row.paused), concurrency=row.concurrency, rate_limit=row.rate_limit
    )


def _naive(value: datetime) -> datetime:
    return value.astimezone(UTC).replace(tzinfo=None)
