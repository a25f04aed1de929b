"""Bring an existing SQL store up to this release's tables: add what is missing, on open.

Design: a new release may only ADD columns (nullable, or with a server default) and indexes to
the tables of ``metadata``; such a table stays usable by the previous release, so workers of two
releases can run side by side during a rolling upgrade, and the schema version in
``adapter_meta`` changes only for a layout an older release cannot use (then it refuses to
open the store rather than corrupt it).

``upgrade_schema`` runs in the transaction that opens the store in each process. It compares the
tables with the database; when something is missing it first locks the version row of
``adapter_meta`` (an UPDATE: a row lock on PostgreSQL, the write lock on SQLite), looks again,
and adds only what is still missing, so any number of processes opening an old store at once
add each column and index exactly once.
"""

from __future__ import annotations

import logging

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection
from sqlalchemy.schema import CreateColumn

from adapter.errors import StoreError

logger = logging.getLogger(__name__)

#: The ``adapter_meta`` key holding the schema version.
SCHEMA_KEY = "schema"


def upgrade_schema(conn: Connection, metadata: sa.MetaData, meta: sa.Table, version: int) -> None:
    """Record ``version`` in a new store, refuse a newer one, and add missing columns/indexes."""
    key = meta.c.key == SCHEMA_KEY
    first = {"key": SCHEMA_KEY, "value": str(version)}
    if conn.dialect.name == "postgresql":  # a row another process wrote first is kept
        conn.execute(postgresql.insert(meta).values(first).on_conflict_do_nothing())
    elif conn.dialect.name == "sqlite":
        conn.execute(sqlite.insert(meta).values(first).on_conflict_do_nothing())
    else:
        raise StoreError(f"the SQL job store runs on SQLite or PostgreSQL, not {conn.dialect.name}")
    found = int(conn.execute(sa.select(meta.c.value).where(key)).scalar_one())
    if found > version:
        raise StoreError(f"job store schema version is {found}, this adapter needs {version}")
    if not _missing(conn, metadata):
        if found < version:
            conn.execute(meta.update().where(key).values(value=str(version)))
        return
    conn.execute(meta.update().where(key).values(value=meta.c.value))  # lock: one at a time
    for table, columns, indexes in _missing(conn, metadata):
        for column in columns:
            _add_column(conn, table, column)
        for index in indexes:
            logger.info("job store: creating index %s", index.name)
            index.create(conn)
    conn.execute(meta.update().where(key).values(value=str(version)))


def _missing(
    conn: Connection, metadata: sa.MetaData
) -> list[tuple[sa.Table, list[sa.Column[object]], list[sa.Index]]]:
    """Return, per table that lacks some, the columns and indexes the database does not have."""
    inspector = sa.inspect(conn)
    found = []
    for table in metadata.sorted_tables:
        have = {column["name"] for column in inspector.get_columns(table.name)}
        columns = [column for column in table.columns if column.name not in have]
        have_indexes = {index["name"] for index in inspector.get_indexes(table.name)}
        indexes = [index for index in table.indexes if index.name not in have_indexes]
        if columns or indexes:
            found.append((table, columns, indexes))
    return found


def _add_column(conn: Connection, table: sa.Table, column: sa.Column[object]) -> None:
    """ALTER TABLE to add ``column``, which must be nullable or have a server default."""
    if not column.nullable and column.server_default is None:
        raise StoreError(
            f"cannot add column {table.name}.{column.name} to existing rows: it is NOT NULL "
            "without a server default"
        )
    preparer = conn.dialect.identifier_preparer
    spec = CreateColumn(column).compile(dialect=conn.dialect)
    logger.info("job store: adding column %s.%s", table.name, column.name)
    conn.exec_driver_sql(f"ALTER TABLE {preparer.format_table(table)} ADD COLUMN {spec}")


def lock_unique_key(conn: Connection, meta: sa.Table, name: str) -> None:
    """Hold, until the transaction ends, the lock of ``name`` (a queue's unique key).

    PostgreSQL: an advisory lock of the name's hash, so other keys are not held up. SQLite has
    one writer at a time: taking the write lock (a no-op UPDATE of ``adapter_meta``) is it.
    """
    if conn.dialect.name == "postgresql":
        conn.execute(sa.text("SELECT pg_advisory_xact_lock(hashtext(:name))"), {"name": name})
    else:
        conn.execute(meta.update().where(meta.c.key == SCHEMA_KEY).values(value=meta.c.value))
