"""Scheduled-task state in SQL (SQLite, PostgreSQL), beside ``adapter_job``; and retention.

Two tables of their own, created on first use (``adapter_job`` is not changed, so no
migration): ``adapter_scheduled_task`` (one row per task: enabled, last tick, lease, last
run) and ``adapter_scheduled_run`` (finished runs, the newest ``keep`` per task). ``claim`` is
one ``UPDATE ... WHERE`` whose condition is the compare-and-set: PostgreSQL re-checks it on the
row it waited for, SQLite writes one at a time. ``now()`` is PostgreSQL's ``now()``; a SQLite
file is on one machine, whose clock it is.

Retention deletes ``adapter_job`` rows through its (queue_name, state, created_at) index, by
id in batches of ``DELETE_BATCH``, so no transaction holds the table for long.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

from adapter.job import utcnow
from adapter.retention import EACH_QUEUE, RetentionRule
from adapter.store.schedules import Claim, RunRecord, ScheduleStore, TaskRecord
from adapter.store.sql.engine import ProcessEngine
from adapter.store.sql.statements import aware, naive
from adapter.store.sql.tables import jobs

#: Jobs deleted per statement by retention.
DELETE_BATCH = 10_000

metadata = sa.MetaData()
tasks = sa.Table(
    "adapter_scheduled_task",
    metadata,
    sa.Column("task_id", sa.String(64), primary_key=True),
    sa.Column("enabled", sa.Boolean, nullable=False, default=True),
    sa.Column("last_tick", sa.DateTime, nullable=True),
    sa.Column("run_requested_at", sa.DateTime, nullable=True),
    sa.Column("lease_owner", sa.String(200), nullable=True),
    sa.Column("lease_until", sa.DateTime, nullable=True),
    sa.Column("last_started_at", sa.DateTime, nullable=True),
    sa.Column("last_finished_at", sa.DateTime, nullable=True),
    sa.Column("last_result", sa.Text, nullable=True),
    sa.Column("last_error", sa.Text, nullable=True),
)
runs = sa.Table(
    "adapter_scheduled_run",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("task_id", sa.String(64), nullable=False),
    sa.Column("tick", sa.DateTime, nullable=True),
    sa.Column("owner", sa.String(200), nullable=False),
    sa.Column("started_at", sa.DateTime, nullable=False),
    sa.Column("finished_at", sa.DateTime, nullable=False),
    sa.Column("result", sa.Text, nullable=True),
    sa.Column("error", sa.Text, nullable=True),
    sa.Index("ix_adapter_scheduled_run_task", "task_id", "id"),
)
_TIMES = ("last_tick", "run_requested_at", "lease_until", "last_started_at", "last_finished_at")


class SqlScheduleStore(ScheduleStore):
    """Scheduled-task tables in the job store's database."""

    def __init__(self, url: str) -> None:
        """Open (lazily) the database at ``url``, the job store's."""
        self._db = ProcessEngine(url, "job store", metadata)

    def now(self) -> datetime:
        if self._db.get().dialect.name != "postgresql":
            return utcnow()
        found: datetime = self._db.run(sa.select(sa.func.now())).scalar_one()
        return found.astimezone(UTC)

    def register(self, task_id: str, last_tick: datetime) -> None:
        with self._db.begin() as conn:
            if conn.execute(sa.select(tasks.c.task_id).where(tasks.c.task_id == task_id)).first():
                return
            try:
                with conn.begin_nested():
                    conn.execute(
                        tasks.insert().values(
                            task_id=task_id, enabled=True, last_tick=naive(last_tick)
                        )
                    )
            except sa.exc.IntegrityError:
                pass  # another worker registered it first

    def claim(self, claim: Claim) -> bool:
        values: dict[str, Any] = {
            "lease_owner": claim.owner,
            "lease_until": naive(claim.lease_until),
            "last_started_at": naive(claim.now),
        }
        statement = tasks.update().where(tasks.c.task_id == claim.task_id)
        if claim.tick is None:
            statement = statement.where(tasks.c.run_requested_at.is_not(None))
            values["run_requested_at"] = None
        else:
            statement = statement.where(
                tasks.c.enabled.is_(True),
                sa.or_(tasks.c.last_tick.is_(None), tasks.c.last_tick < naive(claim.tick)),
            )
            values["last_tick"] = naive(claim.tick)
        if claim.exclusive:
            statement = statement.where(
                sa.or_(tasks.c.lease_owner.is_(None), tasks.c.lease_until < naive(claim.now))
            )
        return bool(self._db.run(statement.values(**values)).rowcount == 1)

    def renew(self, task_id: str, owner: str, lease_until: datetime) -> bool:
        statement = (
            tasks.update()
            .where(tasks.c.task_id == task_id, tasks.c.lease_owner == owner)
            .values(lease_until=naive(lease_until))
        )
        return bool(self._db.run(statement).rowcount == 1)

    def finish(self, run: RunRecord, keep: int) -> None:
        with self._db.begin() as conn:
            conn.execute(
                tasks.update()
                .where(tasks.c.task_id == run.task_id, tasks.c.lease_owner == run.owner)
                .values(lease_owner=None, lease_until=None)
            )
            conn.execute(
                tasks.update()
                .where(tasks.c.task_id == run.task_id)
                .values(
                    last_started_at=naive(run.started_at),
                    last_finished_at=naive(run.finished_at),
                    last_result=run.result,
                    last_error=run.error,
                )
            )
            conn.execute(
                runs.insert().values(
                    task_id=run.task_id,
                    tick=naive(run.tick),
                    owner=run.owner,
                    started_at=naive(run.started_at),
                    finished_at=naive(run.finished_at),
                    result=run.result,
                    error=run.error,
                )
            )
            oldest_kept = (
                sa.select(runs.c.id)
                .where(runs.c.task_id == run.task_id)
                .order_by(runs.c.id.desc())
                .offset(keep - 1)
                .limit(1)
                .scalar_subquery()
            )
            conn.execute(
                runs.delete().where(runs.c.task_id == run.task_id, runs.c.id < oldest_kept)
            )

    def set_enabled(self, task_id: str, enabled: bool) -> bool:
        return self._change(task_id, enabled=enabled)

    def request_run(self, task_id: str, now: datetime) -> bool:
        return self._change(task_id, run_requested_at=naive(now))

    def _change(self, task_id: str, **values: Any) -> bool:
        statement = tasks.update().where(tasks.c.task_id == task_id).values(**values)
        return bool(self._db.run(statement).rowcount == 1)

    def records(self) -> dict[str, TaskRecord]:
        found = {}
        for row in self._db.run(sa.select(tasks)):
            fields = dict(row._mapping)
            for name in _TIMES:
                fields[name] = aware(fields[name])
            found[row.task_id] = TaskRecord(**fields)
        return found

    def history(self, task_id: str, take: int = 100) -> list[RunRecord]:
        statement = (
            sa.select(runs).where(runs.c.task_id == task_id).order_by(runs.c.id.desc()).limit(take)
        )
        return [
            RunRecord(
                task_id=row.task_id,
                tick=aware(row.tick),
                owner=row.owner,
                started_at=row.started_at.replace(tzinfo=UTC),
                finished_at=row.finished_at.replace(tzinfo=UTC),
                result=row.result,
                error=row.error,
            )
            for row in self._db.run(statement)
        ]

    def apply_retention(self, rule: RetentionRule, now: datetime) -> int:
        if rule.queue_name == EACH_QUEUE:
            # every queue name, read from the index's first column alone (no sort, no table)
            queues = list(self._db.run(sa.select(jobs.c.queue_name).distinct()).scalars())
        else:
            queues = [rule.queue_name]
        removed = 0
        for queue in queues:
            matching = sa.and_(jobs.c.queue_name == queue, jobs.c.state == rule.state.value)
            if rule.keep is not None:
                removed += self._delete_beyond(matching, rule.keep)
            if rule.max_age is not None:
                cutoff = naive(now - rule.max_age)
                removed += self._delete_batches(sa.and_(matching, jobs.c.created_at < cutoff))
        return removed

    def _delete_beyond(self, matching: Any, keep: int) -> int:
        """Delete the matching jobs past the newest ``keep`` (by created_at, then id).

        Ordered by ``created_at`` alone, the index gives the boundary without sorting; the
        jobs created at the boundary's very microsecond (one ``add_many``) are then told
        apart by id.
        """
        boundary = self._db.run(
            sa.select(jobs.c.created_at)
            .where(matching)
            .order_by(jobs.c.created_at.desc())
            .offset(keep)
            .limit(1)
        ).scalar()
        if boundary is None:
            return 0
        newer = self._db.run(
            sa.select(sa.func.count()).where(matching, jobs.c.created_at > boundary)
        ).scalar_one()
        removed = self._delete_batches(sa.and_(matching, jobs.c.created_at < boundary))
        tied = (
            sa.select(jobs.c.id)
            .where(matching, jobs.c.created_at == boundary)
            .order_by(jobs.c.id.desc())
            .offset(keep - int(newer))
            .scalar_subquery()
        )
        return removed + int(self._db.run(jobs.delete().where(jobs.c.id.in_(tied))).rowcount)

    def _delete_batches(self, condition: Any) -> int:
        removed = 0
        while True:
            batch = sa.select(jobs.c.id).where(condition).limit(DELETE_BATCH).scalar_subquery()
            count = int(self._db.run(jobs.delete().where(jobs.c.id.in_(batch))).rowcount)
            removed += count
            if count < DELETE_BATCH:
                return removed
