"""Publish on commit: run an action only once a database transaction has committed.

``JobQueue.add(..., transaction=t)`` uses this so a job is published only if the work that
asked for it was committed (Vendure's SQL strategy inserts the job in the caller's transaction).
``t`` is one of:

- a SQLAlchemy ``Session``: the action runs after the session's outermost transaction commits
  (``after_commit``) and is dropped when that transaction ends any other way: rolled back,
  closed, or failed. A rolled-back savepoint (``begin_nested``) does not drop it; only the
  outcome of the outermost transaction counts. Added before the session began a transaction,
  the action waits for the first transaction it begins.
- an object with an ``on_commit(callback)`` method, such as a Django database connection
  (``django.db.connection`` or ``connections[alias]``): Django runs the callback after its
  ``atomic`` block commits, immediately when none is open, and never after a rollback.

A SQLAlchemy ``Connection`` has no after-commit hook, so it is refused: use a Session on it.
An action that raises after the commit is logged; the commit itself has already happened.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from sqlalchemy import event
from sqlalchemy.orm import Session, SessionTransaction

logger = logging.getLogger(__name__)

#: Key in ``Session.info`` of the actions waiting for the session's commit.
_PENDING = "adapter_on_commit"

Action = Callable[[], Any]


def on_commit(transaction: object, action: Action) -> None:
    """Run ``action`` once ``transaction`` commits; never run it if it rolls back."""
    if isinstance(transaction, Session):
        _on_session_commit(transaction, action)
    elif callable(getattr(transaction, "on_commit", None)):
        transaction.on_commit(lambda: _run_logged([action]))  # type: ignore[attr-defined]
    else:
        raise TypeError(
            f"cannot wait for the commit of {transaction!r}: pass a SQLAlchemy Session or an "
            "object with an on_commit(callback) method (a Django connection)"
        )


def _on_session_commit(session: Session, action: Action) -> None:
    if not event.contains(session, "after_commit", _after_commit):
        event.listen(session, "after_commit", _after_commit)
        event.listen(session, "after_transaction_end", _after_transaction_end)
    session.info.setdefault(_PENDING, []).append(action)


def _after_commit(session: Session) -> None:
    # Fires for the outermost transaction only, after the database committed it.
    _run_logged(session.info.pop(_PENDING, []))


def _after_transaction_end(session: Session, transaction: SessionTransaction) -> None:
    # After a commit the list is already gone; any other end of the outermost transaction drops it.
    if transaction.parent is None:
        dropped = session.info.pop(_PENDING, [])
        if dropped:
            logger.info("transaction not committed: %d job(s) not published", len(dropped))


def _run_logged(actions: list[Action]) -> None:
    for action in actions:
        try:
            action()
        except Exception:
            logger.exception("publishing a job after the commit failed; the job is lost")
