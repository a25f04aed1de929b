"""Where counted metrics are summed across processes: beside the jobs, in the job store.

Each process counts in memory (``adapter.metrics.recorder``) and adds its counts here about
once a second, in one write. Every backend keeps two maps: ``counts`` (field -> running
total, only ever incremented, so concurrent writers add up exactly) and ``workers`` (worker
name -> the time it last said it was up, removed when it stops). ``/metrics`` reads both.

- Redis: hashes ``{prefix}:metrics`` (HINCRBY/HINCRBYFLOAT) and ``{prefix}:metrics:workers``,
  written in one pipeline (``adapter.store.redis.metrics``).
- SQL: tables ``adapter_metric`` and ``adapter_metric_worker``, one upsert per field in one
  transaction (``adapter.store.sql.metrics``).
- Memory (and any other store): a dict in this process.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Mapping
from typing import Protocol

from adapter.store.base import JobStore


class MetricsStorage(Protocol):
    """Adds up counts from every process; remembers which workers are up."""

    def write(self, increments: Mapping[str, float], workers: Mapping[str, float | None]) -> None:
        """Add ``increments`` to the totals; set each worker's last-up time (None: remove).

        StoreError when the store cannot be reached (nothing was written).
        """

    def read(self) -> tuple[dict[str, float], dict[str, float]]:
        """Return the totals and each worker's last-up time (seconds since the epoch)."""


class MemoryMetricsStorage:
    """Totals in this process's memory: for the memory store and stores without their own."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: dict[str, float] = {}
        self._workers: dict[str, float] = {}

    def write(self, increments: Mapping[str, float], workers: Mapping[str, float | None]) -> None:
        """Add ``increments``; set or remove worker marks."""
        with self._lock:
            for key, amount in increments.items():
                self._counts[key] = self._counts.get(key, 0) + amount
            for name, seen in workers.items():
                if seen is None:
                    self._workers.pop(name, None)
                else:
                    self._workers[name] = seen

    def read(self) -> tuple[dict[str, float], dict[str, float]]:
        """Return copies of the totals and worker marks."""
        with self._lock:
            return dict(self._counts), dict(self._workers)


_memory: weakref.WeakKeyDictionary[JobStore, MemoryMetricsStorage] = weakref.WeakKeyDictionary()
_memory_lock = threading.Lock()


def metrics_storage(store: JobStore) -> MetricsStorage:
    """Return the metrics storage that lives beside ``store``'s jobs."""
    from adapter.store.redis.store import RedisJobStore
    from adapter.store.sql.store import SqlJobStore

    if isinstance(store, RedisJobStore):
        from adapter.store.redis.metrics import RedisMetricsStorage

        return RedisMetricsStorage(store)
    if isinstance(store, SqlJobStore):
        from adapter.store.sql.metrics import SqlMetricsStorage

        return SqlMetricsStorage(store)
    with _memory_lock:  # one per store object, so every recorder on it shares the totals
        if store not in _memory:
            _memory[store] = MemoryMetricsStorage()
        return _memory[store]
