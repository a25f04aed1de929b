"""The demo scenario: a few queues of example jobs on the embedded default broker and store.

``DemoRun`` builds a Celery app on the embedded default in a data folder of its own (the
``filesystem://`` broker and a SQLite store), starts three queues on the embedded worker and
adds example jobs: quick emails (one fails twice, then succeeds on its last retry), image
resizes reporting progress, and an async report. The CLI drives it and draws the progress.
"""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass, field

from adapter.backoff import constant_backoff
from adapter.celery import CeleryJobQueueStrategy
from adapter.celery.app import create_app, embedded_settings
from adapter.job import Job, JobState

#: How many worker threads the demo's embedded worker runs.
DEMO_CONCURRENCY = 3


def send_email(job: Job) -> str:
    """Pretend to send an email; the address ``flaky@...`` fails its first two attempts."""
    time.sleep(0.3 + random.random() * 0.4)
    if job.data["to"].startswith("flaky") and job.attempts < 3:
        raise ConnectionError(f"SMTP server refused {job.data['to']} (attempt {job.attempts})")
    if job.data["to"].startswith("bounce"):
        raise ValueError(f"mailbox {job.data['to']} does not exist")
    return f"sent to {job.data['to']}"


def resize_image(job: Job) -> dict[str, int]:
    """Pretend to resize an image in steps, reporting progress after each."""
    steps = 5
    for step in range(1, steps + 1):
        time.sleep(0.25)
        job.set_progress(step * 100 // steps)
    return {"width": job.data["width"] // 2, "height": job.data["height"] // 2}


async def generate_report(job: Job) -> str:
    """Pretend to build a report asynchronously, reporting progress."""
    for percent in (25, 50, 75):
        await asyncio.sleep(0.4)
        job.set_progress(percent)
    return f"report for {job.data['month']} ready"


PROCESSES = {
    "send-email": send_email,
    "resize-image": resize_image,
    "generate-report": generate_report,
}

EXAMPLE_JOBS: list[tuple[str, object, int]] = [
    ("send-email", {"to": "ada@example.com"}, 0),
    ("send-email", {"to": "flaky@example.com"}, 2),
    ("send-email", {"to": "bounce@example.com"}, 1),
    ("send-email", {"to": "grace@example.com"}, 0),
    ("resize-image", {"path": "cat.png", "width": 1600, "height": 1200}, 0),
    ("resize-image", {"path": "dog.png", "width": 800, "height": 600}, 0),
    ("generate-report", {"month": "2026-10"}, 0),
]


@dataclass
class DemoRun:
    """One run of the demo: its strategy and the jobs it added."""

    data_dir: str
    jobs: list[Job] = field(default_factory=list)

    def __post_init__(self) -> None:
        app = create_app("adapter-demo", **embedded_settings(self.data_dir))
        self.strategy = CeleryJobQueueStrategy(
            app,
            backoff_strategy=constant_backoff(500),
            concurrency=DEMO_CONCURRENCY,
            embedded_worker=True,  # the demo process runs its jobs itself
        )

    def start(self) -> None:
        """Add the example jobs, then start every queue on the embedded worker."""
        for queue_name, data, retries in EXAMPLE_JOBS:
            self.jobs.append(
                self.strategy.add(Job(queue_name=queue_name, data=data, retries=retries))
            )
        for queue_name, process in PROCESSES.items():
            self.strategy.start(queue_name, process)

    def snapshot(self) -> list[Job]:
        """Return every demo job as stored now."""
        found = [self.strategy.find_one(job.id or "") for job in self.jobs]
        return [job for job in found if job is not None]

    def finished(self) -> bool:
        """True once every job is settled."""
        return all(job.is_settled for job in self.snapshot())

    def stop(self) -> None:
        """Stop the queues and the embedded worker."""
        for queue_name, process in PROCESSES.items():
            self.strategy.stop(queue_name, process)
        self.strategy.destroy()


def count_states(jobs: list[Job]) -> dict[JobState, int]:
    """Return how many jobs are in each state, in Vendure's state order."""
    return {state: sum(job.state == state for job in jobs) for state in JobState}
