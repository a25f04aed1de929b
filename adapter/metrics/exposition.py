"""``/metrics``: the job store's totals and gauges in Prometheus's text format.

Counters and histograms come from the totals every process adds to the store
(``adapter.metrics.storage``), so any process reading the same store shows the whole cluster,
and the totals survive restarts. Gauges are read from the store at each scrape: jobs by queue
and state (``queue_counts``), running jobs, the age of the oldest waiting job per queue (one
indexed query per queue with waiting jobs) and the workers that said they were up within
``WORKER_UP_TTL_S``. Needs ``prometheus_client`` (the ``metrics`` extra), imported here only.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
)
from prometheus_client.utils import floatToGoString

from adapter.job import STARTABLE_STATES, JobState, utcnow
from adapter.metrics.catalog import (
    BUCKETS_S,
    COUNTER_HELP,
    HISTOGRAM_HELP,
    PREFIX,
    WORKER_UP_TTL_S,
    Counter,
    Histogram,
    parse_key,
)
from adapter.metrics.storage import MetricsStorage
from adapter.store.base import JobStore


class StoreCollector:
    """A Prometheus collector reading one job store and its metric totals."""

    def __init__(self, store: JobStore, storage: MetricsStorage) -> None:
        self._store = store
        self._storage = storage

    def collect(self) -> Iterator[Any]:
        """Yield every metric family of ``adapter.metrics.catalog``."""
        totals, workers = self._storage.read()
        yield from _counters(totals)
        yield from _histograms(totals)
        yield from self._gauges(workers)

    def _gauges(self, workers: dict[str, float]) -> Iterator[Any]:
        counts = self._store.queue_counts()
        jobs = GaugeMetricFamily(
            f"{PREFIX}_jobs", "Jobs in the store, by queue and state.", labels=["queue", "state"]
        )
        running = GaugeMetricFamily(
            f"{PREFIX}_jobs_running", "Jobs RUNNING now, by queue.", labels=["queue"]
        )
        oldest = GaugeMetricFamily(
            f"{PREFIX}_queue_oldest_waiting_seconds",
            "Age of the oldest PENDING or RETRYING job, by queue (0 when none waits).",
            labels=["queue"],
        )
        for queue_name, by_state in sorted(counts.items()):
            for state in JobState:
                jobs.add_metric([queue_name, state.value], by_state.get(state, 0))
            running.add_metric([queue_name], by_state.get(JobState.RUNNING, 0))
            waiting = sum(by_state.get(state, 0) for state in STARTABLE_STATES)
            oldest.add_metric([queue_name], self._oldest_waiting_s(queue_name) if waiting else 0)
        up = GaugeMetricFamily(
            f"{PREFIX}_workers_up",
            f"Workers that said they were up in the last {WORKER_UP_TTL_S:g} s.",
        )
        now = time.time()
        up.add_metric([], sum(1 for seen in workers.values() if now - seen < WORKER_UP_TTL_S))
        yield from (jobs, running, oldest, up)

    def _oldest_waiting_s(self, queue_name: str) -> float:
        page = self._store.find_many(
            {
                "filter": {
                    "queueName": {"eq": queue_name},
                    "state": {"in": [state.value for state in STARTABLE_STATES]},
                },
                "sort": {"createdAt": "ASC"},
                "take": 1,
            }
        )
        if not page.items:
            return 0.0
        return max((utcnow() - page.items[0].created_at).total_seconds(), 0.0)


def _counters(totals: dict[str, float]) -> Iterator[Any]:
    by_counter: dict[str, dict[str, float]] = {}
    for key, value in totals.items():
        parsed = parse_key(key)
        if parsed is not None and parsed[0] == "c":
            by_counter.setdefault(parsed[1], {})[parsed[2]] = value
    for counter in Counter:
        family = CounterMetricFamily(
            f"{PREFIX}_jobs_{counter.value}", COUNTER_HELP[counter], labels=["queue"]
        )
        for queue_name, value in sorted(by_counter.get(counter.value, {}).items()):
            family.add_metric([queue_name], value)
        yield family


def _histograms(totals: dict[str, float]) -> Iterator[Any]:
    buckets: dict[tuple[str, str], list[float]] = {}
    sums: dict[tuple[str, str], float] = {}
    for key, value in totals.items():
        parsed = parse_key(key)
        if parsed is None:
            continue
        kind, metric, queue_name, bucket = parsed
        if kind == "b" and bucket is not None and bucket <= len(BUCKETS_S):
            counts = buckets.setdefault((metric, queue_name), [0.0] * (len(BUCKETS_S) + 1))
            counts[bucket] += value
        elif kind == "s":
            sums[(metric, queue_name)] = value
    bounds = [*(floatToGoString(bound) for bound in BUCKETS_S), "+Inf"]  # type: ignore[no-untyped-call]
    for histogram in Histogram:
        family = HistogramMetricFamily(
            f"{PREFIX}_job_{histogram.value}", HISTOGRAM_HELP[histogram], labels=["queue"]
        )
        for (metric, queue_name), counts in sorted(buckets.items()):
            if metric != histogram.value:
                continue
            cumulative, running_total = [], 0.0
            for bound, count in zip(bounds, counts, strict=True):
                running_total += count
                cumulative.append((bound, running_total))
            family.add_metric([queue_name], cumulative, sums.get((metric, queue_name), 0.0))
        yield family


def render_store(store: JobStore, storage: MetricsStorage) -> tuple[bytes, str]:
    """Return the text exposition of ``store``'s metrics and its content type."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(StoreCollector(store, storage))
    return generate_latest(registry), CONTENT_TYPE_LATEST
