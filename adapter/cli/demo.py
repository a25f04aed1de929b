"""``jobqueue demo``: example jobs on the embedded default, drawn live, then a summary."""

from __future__ import annotations

import logging
import time
from typing import TextIO

from adapter.cli.render import progress_bar
from adapter.demo import DemoRun, count_states
from adapter.job import Job, JobState

#: Seconds between two redraws of the live view.
REFRESH_S = 0.2
#: Longest the demo waits for its jobs, in seconds.
DEMO_TIMEOUT_S = 120


def run_demo(data_dir: str, out: TextIO) -> int:
    """Run the demo, drawing each job's progress until all are settled; 0 when all settled."""
    out.write(f"Embedded default: filesystem:// broker and SQLite store in {data_dir}\n")
    out.write("Starting queues send-email, resize-image, generate-report on an embedded worker\n\n")
    # The live view owns the terminal: library warnings (the embedded broker's preflight note)
    # would break its redraw, and the summary says how every job ended.
    logging.getLogger("adapter").setLevel(logging.ERROR)
    run = DemoRun(data_dir)
    drawn = 0
    deadline = time.monotonic() + DEMO_TIMEOUT_S
    try:
        run.start()
        while True:
            jobs = run.snapshot()
            drawn = _draw(out, jobs, drawn)
            if all(job.is_settled for job in jobs) or time.monotonic() > deadline:
                break
            time.sleep(REFRESH_S)
    finally:
        run.stop()
    _summary(out, run.snapshot())
    return 0 if run.finished() else 1


def _draw(out: TextIO, jobs: list[Job], drawn: int) -> int:
    lines = [_job_line(job) for job in jobs]
    if out.isatty():
        if drawn:
            out.write(f"\x1b[{drawn}A")
        out.write("".join(f"\x1b[2K{line}\n" for line in lines))
    elif all(job.is_settled for job in jobs):
        out.write("".join(f"{line}\n" for line in lines))
    out.flush()
    return len(lines)


def _job_line(job: Job) -> str:
    bar = progress_bar(job.progress)
    outcome = job.error if job.state in (JobState.FAILED, JobState.RETRYING) else job.result
    detail = "" if outcome is None else f"  {outcome}"
    return (
        f"{job.queue_name:<16} {(job.id or '')[:8]}  {job.state.value:<9} {bar} "
        f"{job.progress:>3.0f}%  attempt {job.attempts}/{job.retries + 1}{detail}"[:140]
    )


def _summary(out: TextIO, jobs: list[Job]) -> None:
    counts = count_states(jobs)
    out.write(
        "\nSummary: " + ", ".join(f"{state.value} {n}" for state, n in counts.items() if n) + "\n"
    )
    for job in jobs:
        out.write(
            f"  {job.queue_name:<16} {job.state.value:<9} "
            f"attempts {job.attempts}  {job.duration} ms\n"
        )
