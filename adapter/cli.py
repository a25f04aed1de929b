"""The ``jobqueue`` command line: parse, call the library, print.

jobqueue demo [--data-dir DIR]   run example jobs on the embedded default, live
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Sequence
from typing import TextIO

from adapter.demo import DemoRun, count_states
from adapter.job import Job, JobState

#: Seconds between two redraws of the live view.
REFRESH_S = 0.2
#: Characters in a progress bar.
BAR_WIDTH = 20
#: Longest the demo waits for its jobs, in seconds.
DEMO_TIMEOUT_S = 120


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line and return its exit code."""
    parser = argparse.ArgumentParser(prog="jobqueue", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser("demo", help="run example jobs on the embedded default, live")
    demo.add_argument(
        "--data-dir", help="where the broker and store files go (default: a new temp dir)"
    )
    args = parser.parse_args(argv)
    if args.command == "demo":
        return run_demo(args.data_dir or tempfile.mkdtemp(prefix="jobqueue-demo-"), sys.stdout)
    return 2


def run_demo(data_dir: str, out: TextIO) -> int:
    """Run the demo, drawing each job's progress until all are settled; 0 when all settled."""
    out.write(f"Embedded default: filesystem:// broker and SQLite store in {data_dir}\n")
    out.write("Starting queues send-email, resize-image, generate-report on an embedded worker\n\n")
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
    filled = int(BAR_WIDTH * job.progress / 100)
    bar = "#" * filled + "." * (BAR_WIDTH - filled)
    outcome = job.error if job.state in (JobState.FAILED, JobState.RETRYING) else job.result
    detail = "" if outcome is None else f"  {outcome}"
    return (
        f"{job.queue_name:<16} {(job.id or '')[:8]}  {job.state.value:<9} [{bar}] "
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


if __name__ == "__main__":
    sys.exit(main())
