"""PostgreSQL LISTEN/NOTIFY feed of job changes: a trigger notifies, one thread listens.

A trigger on ``adapter_job`` (created with the table's check on first use, under an advisory
lock so processes opening a new database at once do not race) runs ``pg_notify`` on
``adapter_job_changed`` after every UPDATE that changes a job's state or progress (claims,
outcomes, progress and transitions, whichever process or adapter version wrote them), and after
an INSERT of a job that is not PENDING (a worker's claim or outcome that reached the database
before the producer's write-behind did: the job is first recorded RUNNING or settled).
PostgreSQL delivers it when the writing transaction commits. Its payload is JSON: the job's
``id`` and ``state``, and for a settled job the whole row (``row_to_json``) when it fits
PostgreSQL's 8000 bytes, so a waiter sees the outcome without reading it again
(``adapter.store.changes.Change``). A database whose function an older release made (its
payload was the bare id) gets this one on open; that release's listeners then match no job
and poll.

``PgChangeListener`` is the store's one listening connection in a process (psycopg 3, in
autocommit; ``adapter.store.changes``); without psycopg 3 installed, and on SQLite, readers
poll.
"""

from __future__ import annotations

import importlib.util
import json
import threading
from collections.abc import Callable, Mapping
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from adapter.job import Job, JobState
from adapter.store.changes import LISTEN_TICK_S, Change, ChangeHub, ChangeListener

#: The notification channel (and the name of its trigger and function).
CHANNEL = "adapter_job_changed"
#: Seconds to wait for a connection to PostgreSQL.
CONNECT_TIMEOUT_S = 5

_FUNCTION_BODY = f"""
DECLARE
  payload text;
BEGIN
  IF NEW.settled_at IS NOT NULL THEN  -- settled: no later write changes it
    payload := row_to_json(NEW)::text;
  END IF;
  IF payload IS NULL OR octet_length(payload) >= 8000 THEN
    payload := json_build_object('id', NEW.id, 'state', NEW.state)::text;
  END IF;
  PERFORM pg_notify('{CHANNEL}', payload);
  RETURN NULL;
END
"""
#: The trigger on INSERT (the one on UPDATE is named ``CHANNEL``).
INSERT_TRIGGER = f"{CHANNEL}_insert"
#: The function's body as stored now, and how many of the two triggers exist.
_INSTALLED = sa.text(
    "SELECT (SELECT prosrc FROM pg_proc WHERE oid = to_regprocedure(:function)) AS body,"
    " (SELECT count(*) FROM pg_trigger WHERE tgname IN (:name, :insert_name)"
    " AND tgrelid = 'adapter_job'::regclass) AS triggers"
)
_CREATE_FUNCTION = sa.text(
    f"CREATE OR REPLACE FUNCTION {CHANNEL}() RETURNS trigger LANGUAGE plpgsql"
    f" AS $${_FUNCTION_BODY}$$"
)
_CREATE_TRIGGER = sa.text(f"""
CREATE OR REPLACE TRIGGER {CHANNEL} AFTER UPDATE ON adapter_job FOR EACH ROW
WHEN (OLD.state IS DISTINCT FROM NEW.state OR OLD.progress IS DISTINCT FROM NEW.progress)
EXECUTE FUNCTION {CHANNEL}()""")
_CREATE_INSERT_TRIGGER = sa.text(f"""
CREATE OR REPLACE TRIGGER {INSERT_TRIGGER} AFTER INSERT ON adapter_job FOR EACH ROW
WHEN (NEW.state <> 'PENDING')
EXECUTE FUNCTION {CHANNEL}()""")


def create_change_trigger(conn: Connection) -> None:
    """Create (or bring up to date) the notifying trigger on ``adapter_job`` (PostgreSQL only)."""

    def installed() -> bool:
        names = {"function": f"{CHANNEL}()", "name": CHANNEL, "insert_name": INSERT_TRIGGER}
        found = conn.execute(_INSTALLED, names).one()
        return bool(found.body == _FUNCTION_BODY and found.triggers == 2)

    if installed():
        return
    conn.execute(sa.text("SELECT pg_advisory_xact_lock(hashtext(:name))"), {"name": CHANNEL})
    if not installed():
        conn.execute(_CREATE_FUNCTION)
        conn.execute(_CREATE_TRIGGER)
        conn.execute(_CREATE_INSERT_TRIGGER)


def change_listener(
    url: sa.URL, masked_url: str, job_of_row: Callable[[Mapping[str, Any]], Job]
) -> PgChangeListener | None:
    """Return the listener of a PostgreSQL store, or None without psycopg 3 (readers poll).

    ``job_of_row`` reads a settled job from its row as ``row_to_json`` wrote it.
    """
    if importlib.util.find_spec("psycopg") is None:
        return None
    return PgChangeListener(url, masked_url, job_of_row)


class PgChangeListener(ChangeListener):
    """Listens on ``CHANNEL`` and notifies the hub with each job written and its ``Change``."""

    def __init__(
        self, url: sa.URL, masked_url: str, job_of_row: Callable[[Mapping[str, Any]], Job]
    ) -> None:
        super().__init__(f"{masked_url} channel {CHANNEL}")
        self._conninfo = url.set(drivername="postgresql").render_as_string(hide_password=False)
        self._job_of_row = job_of_row

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
                    try:
                        job_id, change = self._change_of(notice.payload)
                    except (ValueError, KeyError, TypeError, AttributeError):
                        hub.notify_all()  # not a payload of ours: whose job it was is unknown
                        continue
                    hub.notify(job_id, change)

    def _change_of(self, payload: str) -> tuple[str, Change]:
        """Return the job id and the ``Change`` a notification's payload tells."""
        row = json.loads(payload)
        state = JobState(row["state"])
        change = Change(state)
        if "created_at" in row:  # the whole row: a settled job
            change = Change(state, self._job_of_row(row))
        return str(row["id"]), change
