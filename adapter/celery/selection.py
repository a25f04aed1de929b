"""Which started queues a worker consumes: Celery's ``-Q``/``-X`` and queue controls, for jobs.

A worker consumes a started queue unless the operator said otherwise, the way Celery's own
flags and remote controls work for ordinary tasks:

- ``celery worker -Q NAMES``: only the started queues named there, by celery queue name
  (``jobs.send-email``) or by queue name (``send-email``); ``-Q celery`` consumes no job
  queue. Without ``-Q``, every started queue.
- ``-X NAMES``: never the started queues named there (either name).
- ``celery control add_consumer jobs.x`` / ``cancel_consumer jobs.x``: x is selected or
  deselected from then on (the celery queue name only: ``x`` alone is an ordinary Celery
  queue to those commands). Selecting a queue this worker does not start consumes nothing:
  its jobs wait in the broker for a worker that starts it.

``jobqueue worker --queues`` (Vendure's ``activeQueues``) works one step earlier: the queues it
leaves out are never started in that worker.
"""

from __future__ import annotations

from collections.abc import Iterable

from adapter.celery.routing import celery_queue


class QueueSelection:
    """The operator's choice of queue names, from worker flags and remote controls."""

    def __init__(self, include: Iterable[str] | None = None, exclude: Iterable[str] = ()) -> None:
        """``include`` None means every queue; names are queue or celery queue names."""
        self._include = None if include is None else set(include)
        self._exclude = set(exclude)

    @classmethod
    def from_worker_options(
        cls, queues: str | Iterable[str] | None, exclude_queues: str | Iterable[str] | None
    ) -> QueueSelection:
        """Return the selection of a worker given ``-Q`` (``queues``) and ``-X``."""
        include = _names(queues)
        return cls(include or None, _names(exclude_queues))

    def selects(self, queue_name: str) -> bool:
        """True when the jobs of ``queue_name`` may be consumed."""
        names = {queue_name, celery_queue(queue_name)}
        if self._include is not None and not names & self._include:
            return False
        return not names & self._exclude

    def include(self, queue_name: str) -> None:
        """Select ``queue_name`` from now on (``add_consumer``)."""
        names = {queue_name, celery_queue(queue_name)}
        self._exclude -= names
        if self._include is not None:
            self._include.add(queue_name)

    def exclude(self, queue_name: str) -> None:
        """Deselect ``queue_name`` from now on (``cancel_consumer``)."""
        self._exclude.add(queue_name)


def _names(value: str | Iterable[str] | None) -> list[str]:
    """Return the names of a ``-Q``/``-X`` value: a list, or comma-separated text."""
    if value is None:
        return []
    parts = value.split(",") if isinstance(value, str) else list(value)
    return [part.strip() for part in parts if part and part.strip()]
