"""SQL job-buffer storage: buffered jobs in one table, shared by every process on the database.

URL: any SQLAlchemy URL the job store takes, for example ``sqlite:////var/lib/app/
buffer.sqlite3`` or ``postgresql+psycopg://user:pass@host/app``. The table
``adapter_job_buffer`` is created on first use; buffered jobs survive a restart. A flush is one
``DELETE ... RETURNING``, so two processes flushing at once never enqueue a job twice. The
contract it fills, and the in-memory storage, are in ``adapter.buffer``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa

from adapter.buffer import JobBufferStorage
from adapter.job import Job, utcnow
from adapter.store.sql.engine import ProcessEngine

metadata = sa.MetaData()
buffered = sa.Table(
    "adapter_job_buffer",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("buffer_id", sa.String(200), nullable=False, index=True),
    sa.Column("job", sa.Text, nullable=False),
    sa.Column("created_at", sa.DateTime, nullable=False),
)


class SqlJobBufferStorage(JobBufferStorage):
    """Buffered jobs in one SQL table, shared by every process using the same database."""

    def __init__(self, url: str) -> None:
        self._db = ProcessEngine(url, "job buffer", metadata)
        self.url = self._db.url

    def _run(self, statement: Any) -> list[Any]:
        with self._db.begin() as conn:
            result = conn.execute(statement)
            return list(result.all()) if result.returns_rows else []

    def add(self, buffer_id: str, job: Job) -> Job:
        now = utcnow().replace(tzinfo=None)  # stored as naive UTC, as in the job store
        self._run(
            buffered.insert().values(
                buffer_id=buffer_id, job=json.dumps(job.to_wire()), created_at=now
            )
        )
        return job

    def buffer_size(self, buffer_ids: Sequence[str]) -> dict[str, int]:
        counts = self._run(
            sa.select(buffered.c.buffer_id, sa.func.count())
            .where(buffered.c.buffer_id.in_(list(buffer_ids)))
            .group_by(buffered.c.buffer_id)
        )
        found = {buffer_id: int(count) for buffer_id, count in counts}
        return {buffer_id: found.get(buffer_id, 0) for buffer_id in buffer_ids}

    def flush(self, buffer_ids: Sequence[str]) -> dict[str, list[Job]]:
        rows = self._run(
            buffered.delete()
            .where(buffered.c.buffer_id.in_(list(buffer_ids)))
            .returning(buffered.c.id, buffered.c.buffer_id, buffered.c.job)
        )
        flushed: dict[str, list[Job]] = {buffer_id: [] for buffer_id in buffer_ids}
        for row in sorted(rows, key=lambda row: int(row.id)):
            flushed[row.buffer_id].append(Job.model_validate(json.loads(row.job)))
        return flushed

    def close(self) -> None:
        """Release connections."""
        self._db.dispose()
