"""One SQLAlchemy engine per OS process, for every SQL table the adapter keeps.

The job store and the SQL job-buffer storage share this: the URL is checked at construction,
the engine opens on first use (and again in a forked child, whose inherited pool is not its
own), tables are created then, SQLite runs in WAL mode with a long busy timeout so several
processes can write one file and has ``adapter_regexp`` (``adapter.patterns.search``, bounded
in time) for the ``regex`` filter, and database errors become StoreError naming the URL with
its password masked.

Round trips (PostgreSQL). A job's claim and outcome are each one statement, and a waiter
reads a job with one: ``run`` sends it alone, in autocommit (one round trip: no ``BEGIN``, no
``COMMIT``, the same atomicity), and a pooled connection is not pinged before each use, as
SQLAlchemy's ``pool_pre_ping`` would. Instead its socket is looked at (no round trip): a
server that closed the connection (a restart, ``pg_terminate_backend``) has left it readable,
and only then, or after ``PING_AFTER_IDLE_S`` idle, is it pinged; a dead one is replaced
before use, every idle one with it, as pre-ping does. The statements of every job (its claim,
its outcome, a waiter's read) go further: ``run_lean`` compiles each once and hands it to the
driver, as SQLAlchemy's execution of one cost about as much CPU as its round trip.
"""

from __future__ import annotations

import contextlib
import os
import select
import time
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
#: Seconds a pooled PostgreSQL connection may sit idle and be used without a ping.
PING_AFTER_IDLE_S = 30.0
#: Key of a pooled connection's ``info``: ``time.monotonic()`` when it was last checked in.
_IDLE_SINCE = "adapter_idle_since"


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
        #: ``run_lean``'s statements, compiled for PostgreSQL.
        self._compiled: dict[Any, Any] = {}  # statement: its SQLCompiler
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
            engine = sa.create_engine(self._url)
        except (sa.exc.ArgumentError, ImportError) as err:
            raise ConfigurationError(f"cannot open {self._what} {self.url}: {err}") from err
        if is_sqlite:
            sa.event.listen(engine, "connect", _sqlite_connect)
        else:
            _check_on_checkout(engine)
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

        On PostgreSQL the statement runs in autocommit: one round trip, as atomic as a
        transaction of its own. Rows are read before the connection goes back to the pool: a
        result read after that would share its cursor with the pool's next user (another
        thread of this process).
        """
        engine = self.get()
        try:
            opened: contextlib.AbstractContextManager[Connection]
            if engine.dialect.name == "sqlite":  # its transactions are this module's business
                opened = engine.begin()
            else:
                opened = engine.connect().execution_options(isolation_level="AUTOCOMMIT")
            with opened as conn:
                result = conn.execute(statement, params)
                return result.freeze()() if result.returns_rows else result
        except sa.exc.OperationalError as err:
            raise StoreError(f"{self._what} {self.url} failed: {err.orig}") from err

    def run_lean(self, statement: Any, params: Mapping[str, Any]) -> tuple[list[Any], int]:
        """``run`` one statement of every job's path; return its rows and its row count.

        On PostgreSQL with psycopg 3 the statement, compiled once, goes to the driver in
        autocommit: no SQLAlchemy execution (0.2 to 0.4 ms of CPU, as much as the round
        trip). Its parameters are SQLAlchemy's (checked, bind processors applied), its errors
        too (``sa.exc.IntegrityError``, ...; a lost connection is ``StoreError``), its rows
        named tuples. Elsewhere it runs as ``run`` does.
        """
        engine = self.get()
        if (engine.dialect.name, engine.dialect.driver) != ("postgresql", "psycopg"):
            with self.begin() as conn:
                result = conn.execute(statement, params)
                return (list(result.all()) if result.returns_rows else []), result.rowcount
        compiled = self._compiled.get(statement)
        if compiled is None:
            compiled = self._compiled[statement] = statement.compile(dialect=engine.dialect)
        values = dict(compiled.construct_params(params))
        for key, process in compiled._bind_processors.items():
            if key in values:
                values[key] = process(values[key])
        return self._send(engine, compiled.string, values)

    def _send(self, engine: Engine, sql: str, values: dict[str, Any]) -> tuple[list[Any], int]:
        """Send ``sql`` on a pooled connection in autocommit; a lost connection is dropped."""
        from psycopg import pq
        from psycopg.rows import namedtuple_row

        try:
            pooled = engine.raw_connection()
        except sa.exc.OperationalError as err:
            raise StoreError(f"{self._what} {self.url} failed: {err.orig}") from err
        driver: Any = pooled.driver_connection
        try:
            driver.autocommit = True
            try:
                with driver.cursor(row_factory=namedtuple_row) as cursor:
                    cursor.execute(sql, values)
                    result = cursor.pgresult  # not .description: it builds every column's
                    returned = result is not None and result.status == pq.ExecStatus.TUPLES_OK
                    rows = cursor.fetchall() if returned else []
                    return rows, cursor.rowcount
            finally:
                if not driver.closed:
                    driver.autocommit = False  # as the pool hands connections out
        except engine.dialect.loaded_dbapi.OperationalError as err:
            pooled.invalidate(err)
            raise StoreError(f"{self._what} {self.url} failed: {err}") from err
        except engine.dialect.loaded_dbapi.Error as err:  # as SQLAlchemy raises it
            dbapi_error = engine.dialect.loaded_dbapi.Error
            raise sa.exc.DBAPIError.instance(sql, values, err, dbapi_error) from err
        finally:
            pooled.close()

    def dispose(self) -> None:
        """Close this process's connections."""
        if self._engine is not None:
            self._engine.dispose()
            self._engine = None


def _check_on_checkout(engine: Engine) -> None:
    """Replace a dead pooled connection before use, pinging only a suspect or long-idle one."""

    @sa.event.listens_for(engine, "checkin")
    def stamp(dbapi_connection: Any, record: Any) -> None:
        record.info[_IDLE_SINCE] = time.monotonic()

    @sa.event.listens_for(engine, "checkout")
    def check(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        idle_since = record.info.get(_IDLE_SINCE)
        if idle_since is None:  # fresh from connect: nothing to check
            return
        recent = time.monotonic() - idle_since < PING_AFTER_IDLE_S
        if recent and not _readable(dbapi_connection):
            return
        try:
            engine.dialect.do_ping(dbapi_connection)
        except engine.dialect.loaded_dbapi.Error as err:
            raise sa.exc.InvalidatePoolError(f"connection lost: {err}") from err


def _readable(dbapi_connection: Any) -> bool:
    """True when an idle connection's socket has something to read: closed, or a message."""
    fileno = getattr(dbapi_connection, "fileno", None)
    if fileno is None:
        return True  # cannot look: ping it
    poller = select.poll()
    poller.register(fileno(), select.POLLIN)
    return bool(poller.poll(0))


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
