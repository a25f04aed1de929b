"""Metric totals in SQL, beside the jobs: tables ``adapter_metric`` (name, value) and
``adapter_metric_worker`` (name, seen_at) (see ``adapter.metrics.storage``).

A write is one transaction of upserts (``INSERT ... ON CONFLICT DO UPDATE SET value = value +
excluded.value``, on SQLite and PostgreSQL alike), so writers in many processes add up exactly.
The tables are created on first use, in the job store's database.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from adapter.errors import StoreError
from adapter.store.sql.engine import CREATE_ATTEMPTS
from adapter.store.sql.store import SqlJobStore

metadata = sa.MetaData()
metric = sa.Table(
    "adapter_metric",
    metadata,
    sa.Column("name", sa.String(300), primary_key=True),
    sa.Column("value", sa.Double, nullable=False),
)
metric_worker = sa.Table(
    "adapter_metric_worker",
    metadata,
    sa.Column("name", sa.String(300), primary_key=True),
    sa.Column("seen_at", sa.Double, nullable=False),
)


class SqlMetricsStorage:
    """Adds metric totals to the tables of a ``SqlJobStore``'s database."""

    def __init__(self, store: SqlJobStore) -> None:
        self._db = store._db
        self._created: Any = None  # the engine the tables were created with
        self._lock = threading.Lock()

    def _begin(self) -> Any:
        engine = self._db.get()
        if self._created is not engine:
            with self._lock:
                if self._created is not engine:
                    _create_tables(engine)
                    self._created = engine
        return self._db.begin()

    def write(self, increments: Mapping[str, float], workers: Mapping[str, float | None]) -> None:
        """Add ``increments`` and set or remove worker marks, in one transaction."""
        make = (
            sqlite.insert if self._db.sa_url.get_backend_name() == "sqlite" else postgresql.insert
        )
        with self._begin() as conn:
            for key, amount in sorted(increments.items()):  # one order: writers never deadlock
                added = make(metric).values(name=key, value=amount)
                conn.execute(
                    added.on_conflict_do_update(
                        index_elements=[metric.c.name],
                        set_={"value": metric.c.value + added.excluded.value},
                    )
                )
            for name, seen in workers.items():
                if seen is None:
                    conn.execute(metric_worker.delete().where(metric_worker.c.name == name))
                    continue
                marked = make(metric_worker).values(name=name, seen_at=seen)
                conn.execute(
                    marked.on_conflict_do_update(
                        index_elements=[metric_worker.c.name],
                        set_={"seen_at": marked.excluded.seen_at},
                    )
                )

    def read(self) -> tuple[dict[str, float], dict[str, float]]:
        """Return the totals and worker marks."""
        with self._begin() as conn:
            counts = conn.execute(sa.select(metric.c.name, metric.c.value)).all()
            workers = conn.execute(sa.select(metric_worker.c.name, metric_worker.c.seen_at)).all()
        return {name: float(value) for name, value in counts}, {
            name: float(seen) for name, seen in workers
        }


def _create_tables(engine: sa.Engine) -> None:
    """Create the tables unless they exist; processes racing to create them all succeed."""
    for attempt in range(CREATE_ATTEMPTS):
        try:
            metadata.create_all(engine, checkfirst=True)
            return
        except sa.exc.DBAPIError as err:
            if "already exists" not in str(err.orig) or attempt + 1 == CREATE_ATTEMPTS:
                raise StoreError(f"cannot create the metrics tables: {err.orig}") from err
