"""Every metric the adapter exports: its name, kind, labels and help, in one place.

Names follow Prometheus's conventions: the ``adapter_`` prefix, ``_total`` on counters (added by
the exposition), ``_seconds`` for durations. Labels are bounded: ``queue`` (a queue name) and
``state`` (a ``JobState``), never a job id. Counters and histograms are counted where the facts
are decided (``adapter.metrics.recorder``) and summed over every process in the job store;
gauges are read from the job store when ``/metrics`` is scraped.
"""

from __future__ import annotations

from enum import StrEnum


class Counter(StrEnum):
    """Job events counted per queue (exported as ``adapter_jobs_<name>_total``)."""

    ADDED = "added"
    STARTED = "started"
    COMPLETED = "completed"
    FAILED = "failed"
    RETRIED = "retried"
    CANCELLED = "cancelled"
    REAPED = "reaped"


#: Help text of each counter.
COUNTER_HELP = {
    Counter.ADDED: "Jobs added (published and recorded PENDING).",
    Counter.STARTED: "Attempts started (jobs claimed by a worker).",
    Counter.COMPLETED: "Jobs COMPLETED.",
    Counter.FAILED: "Jobs FAILED (no retry left).",
    Counter.RETRIED: "Failed attempts that left the job RETRYING.",
    Counter.CANCELLED: "Unsettled jobs CANCELLED (cancel_job, revoke, purge).",
    Counter.REAPED: "RUNNING jobs handed back because their worker was lost.",
}


class Histogram(StrEnum):
    """Durations observed per queue (exported as ``adapter_job_<name>``)."""

    WAIT_SECONDS = "wait_seconds"
    RUN_SECONDS = "run_seconds"


#: Help text of each histogram.
HISTOGRAM_HELP = {
    Histogram.WAIT_SECONDS: "Seconds from add (or ready_at, if later) to a job's first start.",
    Histogram.RUN_SECONDS: "Seconds each attempt ran, until COMPLETED, FAILED or RETRYING.",
}

#: Upper bounds of the histogram buckets, in seconds (``+Inf`` follows).
BUCKETS_S = (
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0,
    600.0, 1800.0, 3600.0,
)  # fmt: skip

#: A worker that has not said it is up for this many seconds is not counted as up.
WORKER_UP_TTL_S = 15.0

#: Prefix of every exported metric.
PREFIX = "adapter"


# Field prefixes, made once: an enum's ``.value`` costs more than the rest of a count.
_COUNTER_FIELDS = {counter: f"c|{counter.value}|" for counter in Counter}
_BUCKET_FIELDS = {histogram: f"b|{histogram.value}|" for histogram in Histogram}
_SUM_FIELDS = {histogram: f"s|{histogram.value}|" for histogram in Histogram}


def counter_key(counter: Counter, queue_name: str) -> str:
    """Return the stored field of ``counter`` for ``queue_name``."""
    return _COUNTER_FIELDS[counter] + queue_name


def bucket_key(histogram: Histogram, queue_name: str, bucket: int) -> str:
    """Return the stored field of one (non-cumulative) bucket; ``len(BUCKETS_S)`` is +Inf."""
    return f"{_BUCKET_FIELDS[histogram]}{queue_name}|{bucket}"


def sum_key(histogram: Histogram, queue_name: str) -> str:
    """Return the stored field of the sum of the observations of ``histogram``."""
    return _SUM_FIELDS[histogram] + queue_name


def parse_key(key: str) -> tuple[str, str, str, int | None] | None:
    """Split a stored field into (kind, metric, queue name, bucket); None when malformed.

    Queue names hold no ``|`` (``adapter.job.validate_queue_name``).
    """
    parts = key.split("|")
    if len(parts) == 3 and parts[0] in {"c", "s"}:
        return parts[0], parts[1], parts[2], None
    if len(parts) == 4 and parts[0] == "b" and parts[3].isdigit():
        return "b", parts[1], parts[2], int(parts[3])
    return None
