"""The queues overview: per queue, jobs by state, oldest waiting age, the last hour's
completions and failures, workers consuming it, and whether it is paused.

Three ``find_many`` calls per queue (``take`` 0 or 1: counts and one row each), so the cost
grows with the number of queues, not of jobs. ``paused`` is there only when the strategy has
``queue_controls()`` (queues that can be paused); workers come from a ``WorkerSource``.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any, Protocol

from adapter.job import JobState, utcnow
from adapter.listing import JobList

#: The window of the throughput and failure counts.
RECENT = timedelta(hours=1)
#: States of a job that waits to run.
WAITING = [JobState.PENDING.value, JobState.RETRYING.value]


class WorkerLike(Protocol):
    """A worker as a ``WorkerSource`` reports it."""

    hostname: str
    queues: list[str]
    running_jobs: list[str]

    def to_wire(self) -> dict[str, Any]:
        """The worker as camelCase JSON."""
        ...  # pragma: no cover


class WorkerSource(Protocol):
    """Tells which workers run now (``adapter.celery.workers.WorkerInspector``)."""

    def workers(self) -> list[Any]:
        """Return the workers answering now."""
        ...  # pragma: no cover


class OverviewStrategy(Protocol):
    """What the overview needs of a strategy."""

    def queue_counts(self) -> dict[str, dict[JobState, int]]:
        """Jobs by state, per queue."""
        ...  # pragma: no cover

    def find_many(self, options: Mapping[str, Any] | None = None) -> JobList:
        """Vendure's findMany."""
        ...  # pragma: no cover


def queues_overview(
    strategy: OverviewStrategy, workers: list[WorkerLike], paused: set[str] | None
) -> list[dict[str, Any]]:
    """Return one camelCase entry per queue with stored jobs or a consuming worker."""
    counts = strategy.queue_counts()
    consuming: dict[str, list[str]] = {}
    for worker in workers:
        for queue in worker.queues:
            consuming.setdefault(queue, []).append(worker.hostname)
    now = utcnow()
    since = (now - RECENT).isoformat()
    entries = []
    for name in sorted(set(counts) | set(consuming)):
        by_state = counts.get(name, {})
        entry: dict[str, Any] = {
            "name": name,
            "counts": {state.value: by_state.get(state, 0) for state in JobState},
            "workers": consuming.get(name, []),
            "oldestWaitingAgeS": _oldest_waiting_age(strategy, name, now),
            "completedLastHour": _settled_since(strategy, name, JobState.COMPLETED, since),
            "failedLastHour": _settled_since(strategy, name, JobState.FAILED, since),
        }
        if paused is not None:
            entry["paused"] = name in paused
        entries.append(entry)
    return entries


def _oldest_waiting_age(strategy: OverviewStrategy, name: str, now: datetime) -> float | None:
    page = strategy.find_many(
        {
            "filter": {"queueName": {"eq": name}, "state": {"in": WAITING}},
            "sort": {"createdAt": "ASC"},
            "take": 1,
        }
    )
    if not page.items:
        return None
    return max(0.0, (now - page.items[0].created_at).total_seconds())


def _settled_since(strategy: OverviewStrategy, name: str, state: JobState, since: str) -> int:
    page = strategy.find_many(
        {
            "filter": {
                "queueName": {"eq": name},
                "state": {"eq": state.value},
                "settledAt": {"after": since},
            },
            "take": 0,
        }
    )
    return page.total_items
