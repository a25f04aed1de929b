"""The operator commands: each takes parsed arguments and a strategy, prints, returns an exit code.

Exit codes: 0 success; 1 a job or operation problem (unknown id, failed job, nothing changed);
``watch`` exits 0 for COMPLETED, 1 for FAILED, 3 for CANCELLED.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import datetime
from typing import TextIO

from adapter.celery import CeleryJobQueueStrategy
from adapter.celery.app import shown_broker_url
from adapter.celery.preflight import check_settings
from adapter.cli.controls import describe
from adapter.cli.render import (
    JOB_HEADERS,
    dumps,
    job_details,
    job_json,
    job_rows,
    progress_bar,
    table,
)
from adapter.control import QueueControl
from adapter.errors import JobQueueError
from adapter.job import Job, JobState, utcnow
from adapter.retention import parse_duration

#: ``watch`` exit code per final state.
WATCH_EXIT = {JobState.COMPLETED: 0, JobState.FAILED: 1, JobState.CANCELLED: 3}
#: ``watch --timeout`` exit code when the job did not settle in time.
WATCH_TIMED_OUT = 4


def add(args: argparse.Namespace, strategy: CeleryJobQueueStrategy, out: TextIO) -> int:
    """``add QUEUE JSON [--retries N]``: add one job and print it."""
    try:
        data = json.loads(args.data)
    except json.JSONDecodeError as err:
        raise JobQueueError(f"job data is not valid JSON: {err}") from err
    job = strategy.add(Job(queue_name=args.queue, data=data, retries=args.retries))
    strategy.flush()  # recorded, or StoreError: say "added" only once it is
    out.write(dumps(job_json(job)) if args.json else f"added job {job.id} to {job.queue_name}")
    out.write("\n")
    return 0


def list_jobs(args: argparse.Namespace, strategy: CeleryJobQueueStrategy, out: TextIO) -> int:
    """``list``: a page of jobs, filtered and sorted."""
    options: dict[str, object] = {"take": args.take, "skip": args.skip}
    filters: dict[str, object] = {}
    if args.queue:
        filters["queueName"] = {"in": args.queue}
    if args.state:
        filters["state"] = {"in": args.state}
    if filters:
        options["filter"] = filters
    field, _, order = args.sort.partition(":")
    options["sort"] = {field: (order or "desc").upper()}
    page = strategy.find_many(options)
    if args.json:
        out.write(
            dumps({"items": [job_json(j) for j in page.items], "totalItems": page.total_items})
        )
    else:
        out.write(table(JOB_HEADERS, job_rows(page.items)))
        out.write(f"\n{len(page.items)} of {page.total_items} job(s)")
    out.write("\n")
    return 0


def show(args: argparse.Namespace, strategy: CeleryJobQueueStrategy, out: TextIO) -> int:
    """``show ID``: every field of one job, and the ids of the jobs that re-run it."""
    job = strategy.find_one(args.id)
    if job is None:
        raise JobQueueError(f"no job with id {args.id}")
    fields = {**job_json(job), "retriesOf": [rerun.id for rerun in strategy.retries_of(args.id)]}
    out.write((dumps(fields) if args.json else job_details(fields)) + "\n")
    return 0


def cancel(args: argparse.Namespace, strategy: CeleryJobQueueStrategy, out: TextIO) -> int:
    """``cancel ID``: cancel a job that has not settled."""
    before = strategy.find_one(args.id)
    job = None if before is None else strategy.cancel_job(args.id)
    if before is None or job is None:
        raise JobQueueError(f"no job with id {args.id}")
    changed = not before.is_settled and job.state == JobState.CANCELLED
    if args.json:
        out.write(dumps({**job_json(job), "cancelled": changed}) + "\n")
    elif changed:
        out.write(f"cancelled job {job.id}\n")
    else:
        out.write(f"job {job.id} is already {job.state.value}; nothing changed\n")
    return 0 if changed else 1


def retry(args: argparse.Namespace, strategy: CeleryJobQueueStrategy, out: TextIO) -> int:
    """``retry ID`` or ``retry --queue Q --state failed``: re-run settled jobs as new jobs."""
    if args.id is not None:
        if args.queue or args.state:
            raise JobQueueError("give a job id or --queue/--state filters, not both")
        job = strategy.retry_job(args.id)
        strategy.flush()
        out.write(dumps(job_json(job)) if args.json else f"job {args.id} re-runs as job {job.id}")
        out.write("\n")
        return 0
    if not args.queue and not args.state:
        raise JobQueueError("give a job id, or --queue and/or --state to retry many jobs")
    filters: dict[str, object] = {}
    if args.queue:
        filters["queueName"] = {"in": args.queue}
    if args.state:
        filters["state"] = {"in": args.state}
    count = strategy.retry_jobs({"filter": filters}, limit=args.limit)
    strategy.flush()
    out.write(dumps({"retried": count}) if args.json else f"re-ran {count} job(s) as new jobs")
    out.write("\n")
    return 0


def reschedule(args: argparse.Namespace, strategy: CeleryJobQueueStrategy, out: TextIO) -> int:
    """``reschedule ID WHEN``: move a job that has not started to WHEN (an ISO time, naive
    is UTC, or a duration from now such as 10m)."""
    try:
        when = datetime.fromisoformat(args.when)
    except ValueError:
        when = utcnow() + parse_duration(args.when)
    job = strategy.reschedule_job(args.id, when)
    if args.json:
        out.write(dumps(job_json(job)) + "\n")
    else:
        out.write(f"job {job.id} starts at {job.ready_at.isoformat() if job.ready_at else ''}\n")
    return 0


def purge(args: argparse.Namespace, strategy: CeleryJobQueueStrategy, out: TextIO) -> int:
    """``purge QUEUE``: cancel the waiting jobs of a queue and delete their messages."""
    deleted, cancelled = strategy.purge(args.queue)
    if args.json:
        out.write(dumps({"messagesDeleted": deleted, "jobsCancelled": len(cancelled)}) + "\n")
    else:
        out.write(
            f"purged {args.queue}: {len(cancelled)} waiting job(s) cancelled, "
            f"{deleted} message(s) deleted\n"
        )
    return 0


def clean(args: argparse.Namespace, strategy: CeleryJobQueueStrategy, out: TextIO) -> int:
    """``clean``: remove settled jobs, optionally only of some queues or older than a duration."""
    try:
        older_than = utcnow() - parse_duration(args.older_than) if args.older_than else None
    except ValueError as err:
        raise JobQueueError(str(err)) from err
    removed = strategy.remove_settled_jobs(args.queue or None, older_than)
    out.write(dumps({"removed": removed}) if args.json else f"removed {removed} settled job(s)")
    out.write("\n")
    return 0


def watch(args: argparse.Namespace, strategy: CeleryJobQueueStrategy, out: TextIO) -> int:
    """``watch ID``: a live progress bar until the job settles; the exit code says how."""
    job = strategy.find_one(args.id)
    if job is None:
        raise JobQueueError(f"no job with id {args.id}")
    live = out.isatty() and not args.json
    final = job.model_copy()
    updates = job.updates(poll_interval=args.interval, error_on_fail=False, deadline=args.timeout)
    for update in updates:
        final = job.model_copy(update=update.model_dump(exclude={"id", "data"}))
        if args.json:
            out.write(json.dumps(update.model_dump(mode="json")) + "\n")
        else:
            bar = progress_bar(update.progress)
            line = f"{job.id}  {update.state.value:<9} {bar} {update.progress:>3.0f}%"
            out.write(("\r\x1b[2K" + line) if live else line + "\n")
        out.flush()
    if live:
        out.write("\n")
    if updates.timed_out:
        if not args.json:
            out.write(f"gave up after {args.timeout:g}s: the job is {final.state.value}\n")
        return WATCH_TIMED_OUT
    outcome = final.error if final.state == JobState.FAILED else final.result
    if not args.json:
        out.write(f"{final.state.value}: {outcome}\n")
    return WATCH_EXIT.get(final.state, 1)


def queues(args: argparse.Namespace, strategy: CeleryJobQueueStrategy, out: TextIO) -> int:
    """``queues``: per queue, jobs by state and the workers consuming it."""
    counts = strategy.queue_counts()
    consumers = strategy.consumers()
    steered = strategy.queue_controls()
    names = sorted(set(counts) | set(consumers) | set(steered))
    if args.json:
        out.write(
            dumps(
                {
                    name: {
                        "states": {s.value: n for s, n in counts.get(name, {}).items()},
                        "workers": consumers.get(name, []),
                        **steered.get(name, QueueControl()).as_dict(),
                    }
                    for name in names
                }
            )
            + "\n"
        )
        return 0
    headers = ["QUEUE", *(state.value for state in JobState), "WORKERS", "CONTROLS"]
    rows = [
        [
            name,
            *(counts.get(name, {}).get(state, 0) for state in JobState),
            ", ".join(consumers.get(name, [])) or "-",
            describe(steered.get(name, QueueControl())),
        ]
        for name in names
    ]
    out.write(table(headers, rows) + "\n")
    return 0


def dead_letters(args: argparse.Namespace, strategy: CeleryJobQueueStrategy, out: TextIO) -> int:
    """``dead-letters [--take N]``: the latest messages workers refused as not jobs."""
    letters = strategy.dead_letters(args.take)
    if args.json:
        out.write(dumps([letter.model_dump(mode="json") for letter in letters]) + "\n")
        return 0
    headers = ["RECEIVED", "QUEUE", "TASK", "TASK ID", "REASON"]
    rows = [
        [letter.received_at, letter.queue, letter.task_name, letter.task_id, letter.reason]
        for letter in letters
    ]
    out.write(table(headers, rows) + "\n")
    return 0


def reap(args: argparse.Namespace, strategy: CeleryJobQueueStrategy, out: TextIO) -> int:
    """``reap``: hand back now the jobs whose heartbeat stopped (workers do it on their own)."""
    reaped = strategy.reap_lost_jobs()
    if args.json:
        out.write(dumps([job_json(job) for job in reaped]) + "\n")
    else:
        for job in reaped:
            out.write(f"handed back job {job.id} on {job.queue_name}\n")
        out.write(f"{len(reaped)} job(s) handed back\n")
    return 0


def check(args: argparse.Namespace, strategy: CeleryJobQueueStrategy, out: TextIO) -> int:
    """``check``: dangerous settings; exit 1 when there is any."""
    try:
        longest = parse_duration(args.longest_job).total_seconds() if args.longest_job else None
    except ValueError as err:
        raise JobQueueError(str(err)) from err
    findings = check_settings(strategy.app, longest)
    if args.json:
        out.write(dumps([{"setting": f.setting, "message": f.message} for f in findings]) + "\n")
    else:
        out.write(f"broker {shown_broker_url(strategy.app)}, store {strategy.store.url}\n")
        for finding in findings:
            out.write(f"WARNING {finding.setting}: {finding.message}\n")
        out.write(f"{len(findings)} finding(s)\n")
    return 1 if findings else 0


def fail(message: str) -> int:
    """Print a one-line error and return exit code 1 (a driver's multi-line text is joined)."""
    one_line = " ".join(part.strip() for part in message.splitlines() if part.strip())
    sys.stderr.write(f"jobqueue: {one_line}\n")
    return 1
