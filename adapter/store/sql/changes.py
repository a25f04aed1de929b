"""PostgreSQL LISTEN/NOTIFY feed of job changes: a trigger notifies, one thread listens.

A trigger on ``adapter_job`` (created with the table's check on first use, under an advisory
lock so processes opening a new database at once do not race) runs
``pg_notify('adapter_job_changed', id)`` after every UPDATE that changes a job's state or
progress: claims, outcomes, progress and transitions, whichever process or adapter version
wrote them. PostgreSQL delivers it when the writing transaction commits.
``PgChangeListener`` is the store's one listening connection in a process (psycopg 3, in
autocommit; ``adapter.store.changes``); without psycopg 3 installed, and on SQLite, readers
poll.
"""

from __future__ import annotations

import importlib.util
import threading
from collections.abc import Callable

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from adapter.store.changes import LISTEN_TICK_S, ChangeHub, ChangeListener

#: The notification channel; its payload is the id of the job written.
CHANNEL = "adapter_job_changed"
#: Seconds to wait for a connection to PostgreSQL.
CONNECT_TIMEOUT_S = 5

_TRIGGER_EXISTS = sa.text(
    "SELECT 1 FROM pg_trigger WHERE tgname = :name AND tgrelid = 'adapter_job'::regclass"
)
_CREATE_FUNCTION = sa.text(f"""
CREATE OR REPLACE FUNCTION {CHANNEL}() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  PERFORM pg_notify('{CHANNEL}', NEW.id);
  RETURN NULL;
END
$$""")
_CREATE_TRIGGER = sa.text(f"""
CREATE OR REPLACE TRIGGER {CHANNEL} AFTER UPDATE ON adapter_job FOR EACH ROW
WHEN (OLD.state IS DISTINCT FROM NEW.state OR OLD.progress IS DISTINCT FROM NEW.progress)
EXECUTE FUNCTION {CHANNEL}()""")


def create_change_trigger(conn: Connection) -> None:
    """Create the notifying trigger on ``adapter_job`` unless it exists (PostgreSQL only)."""
    if conn.execute(_TRIGGER_EXISTS, {"name": CHANNEL}).first() is not None:
        return
    conn.execute(sa.text("SELECT pg_advisory_xact_lock(hashtext(:name))"), {"name": CHANNEL})
    if conn.execute(_TRIGGER_EXISTS, {"name": CHANNEL}).first() is None:
        conn.execute(_CREATE_FUNCTION)
        conn.execute(_CREATE_TRIGGER)


def change_listener(url: sa.URL, masked_url: str) -> PgChangeListener | None:
    """Return the listener of a PostgreSQL store, or None without psycopg 3 (readers poll)."""
    if importlib.util.find_spec("psycopg") is None:
        return None
    return PgChangeListener(url, masked_url)


class PgChangeListener(ChangeListener):
    """Listens on ``CHANNEL`` and notifies the hub with each job id received."""

    def __init__(self, url: sa.URL, masked_url: str) -> None:
        super().__init__(f"{masked_url} channel {CHANNEL}")
        self._conninfo = url.set(drivername="postgresql").render_as_string(hide_password=False)

    def _listen(
        self, stopping: threading.Event, hub: ChangeHub, subscribed: Callable[[], None]
    ) -> None:
        import psycopg  # the store itself may run on another driver

        with psycopg.connect(
            self._conninfo, autocommit=True, connect_timeout=CONNECT_TIMEOUT_S
        ) as conn:
            conn.execute(f"LISTEN {CHANNEL}")
            subscribed()
            while not stopping.is_set():
                for notice in conn.notifies(timeout=LISTEN_TICK_S):
                    hub.notify(notice.payload)
