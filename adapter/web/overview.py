"""The queues overview: per queue, jobs by state, oldest waiting age, the last hour's
completions and failures, workers consuming it, and whether it is paused.

Three ``find_many`` calls per queue (``take`` 0 or 1: counts and one row each), so the cost
grows with the number of queues, not of jobs. ``paused`` is there only when the strategy has
``queue_controls()`` (queues that can be paused); workers come from a ``WorkerSource``, their
heartbeats from the store (each worker marks itself up there about once a second,
``adapter.metrics.storage``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any, Protocol

from adapter.errors import JobQueueError
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
    strategy: OverviewStrategy, workers: Sequence[WorkerLike], paused: set[str] | None
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


def worker_heartbeats(strategy: Any) -> dict[str, float]:
    """Return each worker's last heartbeat in the store (epoch seconds); {} where there is none."""
    store = getattr(strategy, "store", None)
    if store is None:
        return {}
    from adapter.metrics.storage import metrics_storage

    try:
        return metrics_storage(store).read()[1]
    except JobQueueError:  # a store that cannot be read: the inspect answer still shows
        return {}


def workers_with_heartbeats(
    workers: Sequence[WorkerLike], beats: dict[str, float], now: float
) -> list[dict[str, Any]]:
    """Return each worker as JSON with ``heartbeatAgeS`` and ``answering`` (to inspect now);
    a worker known only by its heartbeat is listed too (gone, or not answering)."""
    shown = []
    for worker in workers:
        beat = beats.get(worker.hostname)
        age = None if beat is None else max(0.0, now - beat)
        shown.append({**worker.to_wire(), "heartbeatAgeS": age, "answering": True})
    answering = {worker.hostname for worker in workers}
    for hostname in sorted(set(beats) - answering):
        age = max(0.0, now - beats[hostname])
        shown.append({"hostname": hostname, "queues": [], "runningJobs": [],
                      "heartbeatAgeS": age, "answering": False})  # fmt: skip
    return shown
