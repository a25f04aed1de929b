"""Metrics counted where the lifecycle decides, rendered in Prometheus's text format.

A lifecycle on the memory store runs a known mix of jobs; ``adapter.metrics.render`` is parsed
with prometheus_client's own parser, and every count is exact.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from prometheus_client.parser import text_string_to_metric_families

from adapter.backoff import constant_backoff
from adapter.errors import StoreError
from adapter.job import Job, JobState, utcnow
from adapter.lifecycle import Lifecycle, Liveness
from adapter.metrics import render
from adapter.metrics.catalog import BUCKETS_S
from adapter.metrics.recorder import MetricsRecorder
from adapter.metrics.storage import MemoryMetricsStorage, metrics_storage
from adapter.running import RunningJobs
from adapter.store.memory import MemoryJobStore
from tests.factories import make_job


def samples(store: MemoryJobStore) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Return every sample of ``render(store)``, by name and sorted labels."""
    body, content_type = render(store)
    assert content_type.startswith("text/plain")
    found = {}
    for family in text_string_to_metric_families(body.decode()):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def fail(job: Job) -> str:
    raise ValueError("planned failure")


def test_a_known_mix_of_jobs_is_counted_exactly_by_queue() -> None:
    store = MemoryJobStore()
    recorder = MetricsRecorder(metrics_storage(store), flush_every=3600)
    lifecycle = Lifecycle(
        store, Liveness(), constant_backoff(0), RunningJobs(store), metrics=recorder
    )
    done = [make_job(queue_name="a") for _ in range(3)]
    failing = [make_job(queue_name="a", retries=1) for _ in range(2)]
    waiting = [make_job(queue_name="b") for _ in range(4)]
    for job in [*done, *failing, *waiting]:
        store.insert(job)
    recorder.added([*done, *failing, *waiting])
    for job in done:
        claimed = lifecycle.claim(job)
        assert claimed is not None
        lifecycle.attempt(claimed, lambda job: "ok")
    for _attempt in range(2):
        for job in failing:
            claimed = lifecycle.claim(job)
            assert claimed is not None
            lifecycle.attempt(claimed, fail)
    assert lifecycle.cancel(str(waiting[0].id)) is not None
    lifecycle.cancel_many([str(job.id) for job in waiting[1:3]])
    lifecycle.cancel(str(done[0].id))  # settled: not counted
    recorder.flush()

    got = samples(store)
    a, b = (("queue", "a"),), (("queue", "b"),)
    assert got[("adapter_jobs_added_total", a)] == 5
    assert got[("adapter_jobs_added_total", b)] == 4
    assert got[("adapter_jobs_started_total", a)] == 7
    assert got[("adapter_jobs_completed_total", a)] == 3
    assert got[("adapter_jobs_retried_total", a)] == 2
    assert got[("adapter_jobs_failed_total", a)] == 2
    assert got[("adapter_jobs_cancelled_total", b)] == 3
    assert ("adapter_jobs_reaped_total", a) not in got
    assert got[("adapter_job_wait_seconds_count", a)] == 5  # first starts only
    assert got[("adapter_job_run_seconds_count", a)] == 7  # every attempt's end
    assert got[("adapter_job_run_seconds_bucket", (("le", "+Inf"), ("queue", "a")))] == 7
    assert got[("adapter_jobs", (("queue", "b"), ("state", "CANCELLED")))] == 3
    assert got[("adapter_jobs", (("queue", "b"), ("state", "PENDING")))] == 1
    assert got[("adapter_jobs", (("queue", "a"), ("state", "FAILED")))] == 2
    assert got[("adapter_jobs_running", a)] == 0
    assert got[("adapter_queue_oldest_waiting_seconds", a)] == 0
    assert got[("adapter_queue_oldest_waiting_seconds", b)] >= 0
    assert got[("adapter_workers_up", ())] == 0


def test_oldest_waiting_age_is_that_of_the_oldest_pending_job() -> None:
    store = MemoryJobStore()
    store.insert(make_job(queue_name="old", created_at=utcnow() - timedelta(hours=1)))
    store.insert(make_job(queue_name="old"))
    age = samples(store)[("adapter_queue_oldest_waiting_seconds", (("queue", "old"),))]
    assert 3600 <= age < 3700


def test_histogram_buckets_are_cumulative_and_a_value_on_a_bound_is_in_it() -> None:
    store = MemoryJobStore()
    recorder = MetricsRecorder(metrics_storage(store), flush_every=3600)
    job = make_job(queue_name="h")
    started = job.model_copy(
        update={"state": JobState.RUNNING, "attempts": 1, "started_at": job.created_at}
    )
    recorder.started(
        started.model_copy(update={"started_at": job.created_at + timedelta(seconds=1)})
    )
    recorder.flush()
    got = samples(store)
    h = "adapter_job_wait_seconds_bucket"
    assert got[(h, (("le", "0.5"), ("queue", "h")))] == 0
    assert got[(h, (("le", "1.0"), ("queue", "h")))] == 1
    assert got[(h, (("le", "+Inf"), ("queue", "h")))] == 1
    assert len([key for key in got if key[0] == h]) == len(BUCKETS_S) + 1


def test_a_failed_write_is_kept_and_added_to_the_next() -> None:
    class Flaky(MemoryMetricsStorage):
        down = True

        def write(self, increments, workers):  # type: ignore[no-untyped-def]
            if self.down:
                raise StoreError("store down")
            super().write(increments, workers)

    storage = Flaky()
    recorder = MetricsRecorder(storage, flush_every=3600)
    recorder.cancelled([make_job(queue_name="q"), make_job(queue_name="q")])
    recorder.flush()
    assert storage.read() == ({}, {})
    storage.down = False
    recorder.cancelled([make_job(queue_name="q")])
    recorder.flush()
    assert storage.read()[0] == {"c|cancelled|q": 3}


def test_a_worker_is_up_until_it_says_it_stops() -> None:
    storage = MemoryMetricsStorage()
    recorder = MetricsRecorder(storage, flush_every=3600)
    recorder.worker_up("w1@host")
    recorder.flush()
    assert list(storage.read()[1]) == ["w1@host"]
    recorder.worker_down()
    assert storage.read()[1] == {}
    recorder.close()


@pytest.mark.parametrize("source", ["store", "strategy-like"])
def test_render_takes_a_store_or_anything_with_a_store(source: str) -> None:
    store = MemoryJobStore()

    class HasStore:
        pass

    holder = HasStore()
    holder.store = store  # type: ignore[attr-defined]
    body, _ = render(store if source == "store" else holder)
    assert b"adapter_workers_up 0.0" in body


def test_the_wait_of_a_delayed_job_counts_from_its_ready_time() -> None:
    store = MemoryJobStore()
    recorder = MetricsRecorder(metrics_storage(store), flush_every=3600)
    job = make_job(queue_name="d", created_at=utcnow() - timedelta(hours=1))
    ready = job.created_at + timedelta(minutes=59, seconds=59, milliseconds=900)
    started = ready + timedelta(milliseconds=50)
    recorder.started(
        job.model_copy(
            update={
                "state": JobState.RUNNING,
                "attempts": 1,
                "ready_at": ready,
                "started_at": started,
            }
        )
    )
    recorder.flush()
    got = samples(store)
    assert got[("adapter_job_wait_seconds_bucket", (("le", "0.05"), ("queue", "d")))] == 1
