"""``/metrics`` after a known mix of jobs on real prefork workers: exact counts.

Two workers (Redis or RabbitMQ broker, SQLite store, two pool processes each) run N jobs that
complete and M that fail after one retry; the test process adds them and K jobs on a queue
nobody runs, which it cancels. ``/metrics`` on one worker's health port, parsed with
prometheus_client's parser, reaches the counts; after the workers stop,
``adapter.metrics.render`` in the test process shows exactly them (nothing counted twice
across pool processes and workers, nothing lost at exit).
"""

from __future__ import annotations

import urllib.request
from collections.abc import Callable

import pytest
from prometheus_client.parser import text_string_to_metric_families

from adapter import CeleryJobQueueStrategy, Job
from adapter.metrics import render
from tests.integration.conftest import SERVER_BROKERS, WorkerProcess
from tests.private_brokers import free_port
from tests.support import unique_queue, wait_for, wait_settled

pytestmark = pytest.mark.timeout(180)

COMPLETED, FAILED, CANCELLED = 8, 4, 3

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def parse(body: bytes) -> Samples:
    """Return every sample of a text exposition, by name and sorted labels."""
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(body.decode())
        for sample in family.samples
    }


def scrape(port: int) -> Samples:
    """GET /metrics of a worker's health port."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as answer:
        assert answer.headers["Content-Type"].startswith("text/plain; version=")
        return parse(answer.read())


@SERVER_BROKERS
def test_metrics_count_a_known_mix_of_jobs_exactly(
    producer: CeleryJobQueueStrategy, make_worker: Callable[..., WorkerProcess]
) -> None:
    queue, idle = unique_queue("metrics"), unique_queue("metrics-idle")
    port = free_port()
    worker = make_worker(
        f"{queue}=mixed", "-P", "prefork", "-c", "2", ADAPTER_HEALTH_PORT=str(port)
    )
    other = make_worker(f"{queue}=mixed", "-P", "prefork", "-c", "2")
    worker.start()
    other.start()
    jobs = [producer.add(Job(queue_name=queue, data={})) for _ in range(COMPLETED)]
    jobs += [
        producer.add(Job(queue_name=queue, data={"fail": True}, retries=1)) for _ in range(FAILED)
    ]
    waiting = [producer.add(Job(queue_name=idle, data={})) for _ in range(CANCELLED)]
    producer.flush()
    for job in waiting:
        producer.cancel_job(job.id or "")
    for job in jobs:
        wait_settled(producer, job)
    producer.metrics.flush()
    q, i = (("queue", queue),), (("queue", idle),)
    expected = {
        ("adapter_jobs_added_total", q): COMPLETED + FAILED,
        ("adapter_jobs_added_total", i): CANCELLED,
        ("adapter_jobs_started_total", q): COMPLETED + 2 * FAILED,
        ("adapter_jobs_completed_total", q): COMPLETED,
        ("adapter_jobs_retried_total", q): FAILED,
        ("adapter_jobs_failed_total", q): FAILED,
        ("adapter_jobs_cancelled_total", i): CANCELLED,
        ("adapter_job_wait_seconds_count", q): COMPLETED + FAILED,
        ("adapter_job_run_seconds_count", q): COMPLETED + 2 * FAILED,
        ("adapter_jobs", (("queue", queue), ("state", "COMPLETED"))): COMPLETED,
        ("adapter_jobs", (("queue", queue), ("state", "FAILED"))): FAILED,
        ("adapter_jobs", (("queue", idle), ("state", "CANCELLED"))): CANCELLED,
        ("adapter_jobs_running", q): 0,
        ("adapter_workers_up", ()): 2,
    }

    def reached() -> Samples | None:
        found = scrape(port)
        return found if all(found.get(key) == value for key, value in expected.items()) else None

    served = wait_for(reached, "the worker's /metrics to show the mix", report=lambda: scrape(port))
    assert not any(name == "adapter_jobs_reaped_total" for name, _ in served)

    worker.stop()
    other.stop()
    body, _ = render(producer)
    after = parse(body)
    assert {key: after.get(key) for key in expected} == {
        **expected,
        ("adapter_workers_up", ()): 0,  # the worker removed its mark as it stopped
    }
