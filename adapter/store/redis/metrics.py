"""Metric totals in Redis, beside the jobs: hash ``{prefix}:metrics`` and
``{prefix}:metrics:workers`` (see ``adapter.metrics.storage``).

A write is one pipeline (no transaction: increments commute, a partial write after a lost
connection is retried by the recorder only for what it knows failed, the whole batch). Whole
numbers go through HINCRBY, so counts stay exact integers; sums of seconds use HINCRBYFLOAT.
"""

from __future__ import annotations

from collections.abc import Mapping

from adapter.store.redis.store import RedisJobStore


class RedisMetricsStorage:
    """Adds metric totals to the hashes of a ``RedisJobStore``'s prefix."""

    def __init__(self, store: RedisJobStore) -> None:
        self._store = store
        self._counts_key = f"{store.keys.prefix}:metrics"
        self._workers_key = f"{store.keys.prefix}:metrics:workers"

    def write(self, increments: Mapping[str, float], workers: Mapping[str, float | None]) -> None:
        """Add ``increments`` and set or remove worker marks, in one pipeline."""
        with self._store._talking() as (client, _):
            pipe = client.pipeline(transaction=False)
            for key, amount in increments.items():
                if float(amount).is_integer():
                    pipe.hincrby(self._counts_key, key, int(amount))
                else:
                    pipe.hincrbyfloat(self._counts_key, key, amount)
            for name, seen in workers.items():
                if seen is None:
                    pipe.hdel(self._workers_key, name)
                else:
                    pipe.hset(self._workers_key, name, repr(seen))
            pipe.execute()

    def read(self) -> tuple[dict[str, float], dict[str, float]]:
        """Return the totals and worker marks."""
        with self._store._talking() as (client, _):
            pipe = client.pipeline(transaction=False)
            pipe.hgetall(self._counts_key)
            pipe.hgetall(self._workers_key)
            counts, workers = pipe.execute()
        return (
            {str(key): float(value) for key, value in counts.items()},
            {str(key): float(value) for key, value in workers.items()},
        )
