"""One SQLAlchemy engine per OS process, for every SQL table the adapter keeps.

The job store and the SQL job-buffer storage share this: the URL is checked at construction,
the engine opens on first use (and again in a forked child, whose inherited pool is not its
own), tables are created then, SQLite runs in WAL mode with a long busy timeout so several
processes can write one file and has ``adapter_regexp`` (``adapter.patterns.search``, bounded
in time) for the ``regex`` filter, and database errors become StoreError naming the URL with
its password masked.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from adapter.errors import ConfigurationError, StoreError
from adapter.forksafe import ForkSafeLock
from adapter.masking import mask_url
from adapter.patterns import search

#: Tries to create the tables of a new database that other processes are creating too.
CREATE_ATTEMPTS = 3
#: How long SQLite waits for a lock held by another writer, in milliseconds.
SQLITE_BUSY_TIMEOUT_MS = 30_000
#: SQLite function ``adapter_regexp(pattern, value, field)``: 1 when ``pattern`` occurs in
#: ``value`` ignoring case, within the matching budget of the query's thread.
SQLITE_REGEXP = "adapter_regexp"


class ProcessEngine:
    """A lazily opened, per-process SQLAlchemy engine for the tables of ``metadata``."""

    def __init__(
        self,
        url: str,
        what: str,
        metadata: sa.MetaData,
        on_open: Callable[[Connection], None] | None = None,
    ) -> None:
        #: The URL with its password masked, for messages.
        self.url = mask_url(url)
        parsed: sa.URL | None = None
        with contextlib.suppress(sa.exc.ArgumentError):  # its text holds the whole URL
            parsed = sa.make_url(url)
        # SQLAlchemy ends the password at its first "@": the rest would be named as the host
        if parsed is None or "@" in (parsed.host or ""):
            raise ConfigurationError(
                f"malformed {what} URL {self.url} (percent-encode special characters)"
            )
        self._url = parsed
        self._what = what
        self._metadata = metadata
        self._on_open = on_open
        self._engine: Engine | None = None
        self._engine_pid = 0
        self._lock = ForkSafeLock()

    @property
    def sa_url(self) -> sa.URL:
        """The parsed URL, password included: for drivers that connect on their own."""
        return self._url

    def get(self) -> Engine:
        """Return this process's engine, opening it (and the tables) on first use."""
        if self._engine is None or self._engine_pid != os.getpid():
            with self._lock:
                if self._engine is None or self._engine_pid != os.getpid():
                    self._engine = self._open()
                    self._engine_pid = os.getpid()
        return self._engine

    def _open(self) -> Engine:
        is_sqlite = self._url.get_backend_name() == "sqlite"
        if is_sqlite and self._url.database not in (None, "", ":memory:"):
            os.makedirs(os.path.dirname(os.path.abspath(self._url.database)), exist_ok=True)
        try:
            engine = sa.create_engine(self._url, pool_pre_ping=not is_sqlite)
        except (sa.exc.ArgumentError, ImportError) as err:
            raise ConfigurationError(f"cannot open {self._what} {self.url}: {err}") from err
        if is_sqlite:
            sa.event.listen(engine, "connect", _sqlite_connect)
        for attempt in range(CREATE_ATTEMPTS):
            try:
                self._metadata.create_all(engine, checkfirst=True)
                if self._on_open is not None:
                    with engine.begin() as conn:
                        self._on_open(conn)
                return engine
            except sa.exc.DBAPIError as err:
                # Processes opening a new database at once race to create its tables: the
                # loser finds them made ("already exists") and checks again.
                if "already exists" not in str(err.orig) or attempt + 1 == CREATE_ATTEMPTS:
                    raise StoreError(f"cannot reach {self._what} {self.url}: {err.orig}") from err
        raise AssertionError("unreachable")

    @contextmanager
    def begin(self) -> Iterator[Connection]:
        """Give a connection inside one transaction; a database error becomes StoreError."""
        try:
            with self.get().begin() as conn:
                yield conn
        except sa.exc.OperationalError as err:
            raise StoreError(f"{self._what} {self.url} failed: {err.orig}") from err

    def run(self, statement: Any, params: Mapping[str, Any] | None = None) -> Any:
        """Execute one statement in its own transaction and return its result.

        Rows are read before the connection goes back to the pool: a result read after that
        would share its cursor with the pool's next user (another thread of this process).
        """
        with self.begin() as conn:
            result = conn.execute(statement, params)
            return result.freeze()() if result.returns_rows else result

    def dispose(self) -> None:
        """Close this process's connections."""
        if self._engine is not None:
            self._engine.dispose()
            self._engine = None


def _sqlite_connect(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    cursor.close()
    dbapi_connection.create_function(SQLITE_REGEXP, 3, _sqlite_regexp)


def _sqlite_regexp(pattern: str | None, value: str | None, field: str) -> int | None:
    if pattern is None or value is None:
        return None
    return int(search(pattern, value, field))
