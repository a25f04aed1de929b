"""Celery's ``revoke`` of a job's id cancels the job: CANCELLED in the store, never run.

``app.control.revoke(job.id)`` (what Flower's revoke button sends) reaches every worker online;
Celery keeps the id in each worker's memory and discards its message when it arrives. Each
worker of the app also cancels the job in the store the moment the command arrives, before
Celery's own handling (``install_revoke_hook``): a waiting job is CANCELLED at once, visible
in ``jobqueue list``, and its message, whichever worker gets it, is dropped at claim. With
``terminate=True`` on a prefork worker Celery then kills the pool process running it: the job
is already CANCELLED (settled: no retry, no lost-worker recovery) and Celery reports it revoked.
Other pools cannot stop a thread; there the running process is told, as for ``cancel_job``
(``job.raise_if_cancelled()``). A message discarded as revoked later on (a worker's
``--statedb``, an expired message) cancels its job too (the ``task_revoked`` signal).

Celery's revokes live in the memory of the workers online when they are sent; the store's
CANCELLED lasts: ``cancel_job`` / ``jobqueue cancel`` need no worker at all.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

from celery import Celery
from celery.signals import task_revoked

from adapter.celery.envelope import TASK_NAME
from adapter.errors import JobQueueError
from adapter.forksafe import no_fork
from adapter.lifecycle import Lifecycle

logger = logging.getLogger(__name__)

#: The worker's remote-control command this module extends.
REVOKE_COMMAND = "revoke"


class RevokeCanceller:
    """Cancels the jobs whose ids a Celery revoke names, for one app."""

    def __init__(self, app: Celery, lifecycle: Lifecycle) -> None:
        self._app = app
        self._lifecycle = lifecycle
        task_revoked.connect(self.on_task_revoked)  # weak: gone with this object

    def cancel(self, task_ids: Iterable[Any]) -> None:
        """Cancel the unsettled jobs among ``task_ids`` (ids of other tasks change nothing)."""
        ids = [str(task_id) for task_id in task_ids if task_id]
        if not ids:
            return
        try:
            with no_fork():  # in a prefork worker's parent (adapter.forksafe)
                cancelled = self._lifecycle.cancel_many(ids)
        except JobQueueError as err:
            logger.warning("could not cancel the jobs of revoked ids %s: %s", ids, err)
            return
        for job in cancelled:
            logger.info("job %s on %r cancelled: its id was revoked", job.id, job.queue_name)

    def on_task_revoked(self, sender: Any = None, request: Any = None, **_: Any) -> None:
        """Celery discarded a message of this app's job task as revoked: cancel its job."""
        if getattr(sender, "name", None) == TASK_NAME and getattr(sender, "app", None) is self._app:
            self.cancel([getattr(request, "id", None)])


def install_revoke_hook(consumer: Any, canceller: RevokeCanceller) -> None:
    """Make this worker's ``revoke`` command cancel the jobs it names, then do Celery's part.

    Only this worker's mailbox changes (its own handler table); Celery's global command
    registry is left alone. Idempotent: a consumer restarted after a lost connection keeps it.
    """
    node = _mailbox_node(consumer)
    if node is None:  # no remote control on this transport, or it is turned off
        return
    revoke = node.handlers.get(REVOKE_COMMAND)
    if revoke is None or getattr(revoke, "cancels_jobs", False):
        return

    def revoke_and_cancel(state: Any, task_id: Any, *args: Any, **kwargs: Any) -> Any:
        canceller.cancel(task_id if isinstance(task_id, list | tuple | set) else [task_id])
        return revoke(state, task_id, *args, **kwargs)

    revoke_and_cancel.cancels_jobs = True  # type: ignore[attr-defined]
    node.handlers = {**node.handlers, REVOKE_COMMAND: revoke_and_cancel}


def _mailbox_node(consumer: Any) -> Any:
    """Return the worker's remote-control mailbox node (Celery's ``Pidbox``), or None."""
    for step in getattr(consumer, "steps", []):
        box = getattr(step, "box", None)
        if box is not None and getattr(box, "node", None) is not None:
            return box.node
    return None
