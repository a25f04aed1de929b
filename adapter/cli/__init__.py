"""The ``jobqueue`` command line: parse, call the library, print.

    jobqueue demo                      example jobs on the embedded default, live
    jobqueue add QUEUE JSON            add a job          [--retries N]
    jobqueue list                      list jobs          [--queue Q]... [--state S]... [--take N]
                                                          [--skip N] [--sort FIELD[:asc|desc]]
    jobqueue show ID                   one job, every field
    jobqueue cancel ID                 cancel a job that has not settled
    jobqueue retry ID                  re-run a FAILED or CANCELLED job as a new, linked job
    jobqueue retry --queue Q --state failed   the same for every match [--limit N]
    jobqueue reschedule ID WHEN        move a job not started yet (ISO time, or 10m from now)
    jobqueue purge QUEUE               cancel a queue's waiting jobs, delete their messages
    jobqueue clean                     remove settled jobs [--queue Q]... [--older-than 7d]
    jobqueue watch ID                  live progress until the job settles (exit code: its state)
                                                          [--timeout SECONDS: then exit 4]
    jobqueue queues                    per queue: jobs by state, workers consuming it, controls
    jobqueue pause|resume QUEUE        start no new job of QUEUE on any worker / start again
    jobqueue limit QUEUE               cluster-wide limits [--concurrency N|none]
                                                          [--rate N/s|N/m|N/h|none]
    jobqueue schedules                 scheduled tasks: last and next run, running, enabled
    jobqueue schedules run ID          ask for a run now  (also: enable ID, disable ID)
    jobqueue check                     dangerous settings  [--longest-job 2h]
    jobqueue dashboard                 the dashboard and HTTP admin API [--host 127.0.0.1]
                                       [--port 8025] [--token T | --basic-auth U:P]
                                       [--read-only] [--redact KEY]... [--interval 2]
    jobqueue worker MODULE             a Celery worker for the queues MODULE starts
                                       [--queues A,B] [--pool P] [--concurrency N]
                                       [--graceful-timeout 20] [--health-port PORT]
                                       [--health-host 127.0.0.1]

``--app MODULE[:ATTR]`` uses the strategy your module builds (its broker and store); without it
the strategy is built by ``create_app`` (ADAPTER_BROKER_URL, ADAPTER_STORE_URL, ... from the
environment; a ``celeryconfig`` module when importable). MODULE is imported from the current
folder first, as ``celery -A`` does. ``--json`` prints JSON for scripts. Options go before or
after the command. Errors print one line and exit non-zero: 2 for a usage error
(an unknown option, a number out of its range), 1 for the library's errors (a job field out
of its range, an unknown id).
"""

from __future__ import annotations

import argparse
import importlib
import logging
import math
import os
import sys
import tempfile
from collections.abc import Callable, Sequence
from typing import NoReturn, TextIO

from adapter.celery import CeleryJobQueueStrategy
from adapter.celery.app import create_app
from adapter.celery.strategy import launched_by_cli
from adapter.celery.worker import DEFAULT_GRACEFUL_TIMEOUT_S, run_worker
from adapter.cli import commands, controls, dashboard
from adapter.cli.demo import run_demo
from adapter.cli.schedules import schedules as run_schedules
from adapter.errors import JobQueueError
from adapter.job import JobState
from adapter.listing import MAX_SKIP, MAX_TAKE
from adapter.rerun import MAX_RETRY_JOBS
from adapter.settings import HEALTH_HOST, MAX_PORT
from adapter.store.base import MAX_DEAD_LETTERS

Command = Callable[[argparse.Namespace, CeleryJobQueueStrategy, TextIO], int]

#: Largest ``worker --concurrency``: far more processes or threads than a machine runs well.
MAX_CONCURRENCY = 10_000


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line and return its exit code."""
    if os.getcwd() not in sys.path:  # MODULE and celeryconfig come from here, as for celery -A
        sys.path.insert(0, os.getcwd())
    args = _parser().parse_args(argv)
    if args.command == "demo":
        return run_demo(args.data_dir or tempfile.mkdtemp(prefix="jobqueue-demo-"), sys.stdout)
    if args.command == "worker":
        return _worker(args)
    command: Command = args.run
    _keep_library_logs_off_the_terminal()
    try:
        with launched_by_cli():
            strategy = load_strategy(args.app)
            try:
                return command(args, strategy, sys.stdout)
            finally:
                strategy.destroy()
    except (JobQueueError, ValueError) as err:
        return commands.fail(str(err))
    except KeyboardInterrupt:
        return 130


def _keep_library_logs_off_the_terminal() -> None:
    """Unless logging is configured, the library's log lines are not printed beside ours.

    Without a handler Python prints warnings to stderr itself; a command already says what
    went wrong in its one error line.
    """
    if not logging.getLogger().handlers:
        logging.getLogger("adapter").addHandler(logging.NullHandler())


def _worker(args: argparse.Namespace) -> int:
    active = [name for name in args.queues.split(",") if name] if args.queues else None
    try:
        with launched_by_cli(active):
            strategy = load_strategy(args.module)
    except JobQueueError as err:
        return commands.fail(str(err))
    if not strategy.running_queues():
        return commands.fail(
            f"{args.module} starts no queue" + (f" among {active}" if active else "")
        )
    return run_worker(
        strategy,
        pool=args.pool,
        concurrency=args.concurrency,
        loglevel=args.loglevel,
        hostname=args.hostname,
        graceful_timeout=args.graceful_timeout,
        health_port=args.health_port,
        health_host=args.health_host,
    )


def load_strategy(app: str | None) -> CeleryJobQueueStrategy:
    """Return the strategy of ``module[:attribute]``, or one built by ``create_app``."""
    if not app:
        return CeleryJobQueueStrategy(create_app("jobqueue"), embedded_worker=False)
    module_name, _, attribute = app.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as err:
        raise JobQueueError(f"cannot import {module_name!r}: {err}") from err
    if attribute:
        found = getattr(module, attribute, None)
        if isinstance(found, CeleryJobQueueStrategy):
            return found
        raise JobQueueError(f"{app} is not a CeleryJobQueueStrategy")
    for value in vars(module).values():
        if isinstance(value, CeleryJobQueueStrategy):
            return value
    raise JobQueueError(f"module {module_name!r} has no CeleryJobQueueStrategy")


class _OneLineParser(argparse.ArgumentParser):
    """An argument parser whose usage errors are one line, like every other error here."""

    def error(self, message: str) -> NoReturn:
        """Print ``message`` as one line and exit 2 (argparse's code for a usage error)."""
        self.exit(2, f"{self.prog}: {message} (see {self.prog} --help)\n")


def _whole(low: int, high: int) -> Callable[[str], int]:
    """Return an argument type: an integer from ``low`` to ``high``, else a usage error."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = low - 1
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"{text!r} is not an integer from {low} to {high}")
        return value

    return parse


def _state(text: str) -> str:
    """An argument type: a job state in any case, else a usage error naming it."""
    if text.upper() not in JobState.__members__:
        states = ", ".join(state.value.lower() for state in JobState)
        raise argparse.ArgumentTypeError(f"{text!r} is not a job state ({states})")
    return text.upper()


def _seconds(text: str) -> float:
    """An argument type: a finite number of seconds, 0 or more, else a usage error."""
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not (math.isfinite(value) and value >= 0):
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds, 0 or more")
    return value


def _parser() -> argparse.ArgumentParser:
    parser = _OneLineParser(prog="jobqueue", description="Vendure-style jobs on Celery.")
    _common_options(parser, default=None)
    # After the command too; SUPPRESS keeps a value given before the command.
    common = _OneLineParser(add_help=False)
    _common_options(common, default=argparse.SUPPRESS)
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="example jobs on the embedded default, live")
    demo.add_argument("--data-dir", help="folder for broker and store files (default: a new one)")
    add = sub.add_parser("add", parents=[common], help="add a job")
    add.add_argument("queue")
    add.add_argument("data", help="the job data as JSON")
    add.add_argument("--retries", type=int, default=0)
    add.set_defaults(run=commands.add)
    listing = sub.add_parser("list", parents=[common], help="list jobs")
    listing.add_argument("--queue", action="append", help="only this queue (repeatable)")
    listing.add_argument(
        "--state", action="append", type=_state, help="only this state (repeatable)"
    )
    listing.add_argument("--take", type=_whole(0, MAX_TAKE), default=20)
    listing.add_argument("--skip", type=_whole(0, MAX_SKIP), default=0)
    listing.add_argument("--sort", default="createdAt:desc", help="FIELD[:asc|desc]")
    listing.set_defaults(run=commands.list_jobs)
    for name, run, text in [
        ("show", commands.show, "one job, every field"),
        ("cancel", commands.cancel, "cancel a job that has not settled"),
        ("watch", commands.watch, "live progress until the job settles"),
    ]:
        one = sub.add_parser(name, parents=[common], help=text)
        one.add_argument("id")
        one.set_defaults(run=run)
    sub.choices["watch"].add_argument("--interval", type=_seconds, default=0.2)
    sub.choices["watch"].add_argument(
        "--timeout", type=_seconds, default=None, help="give up after SECONDS (exit 4)"
    )
    retry = sub.add_parser(
        "retry", parents=[common], help="re-run FAILED or CANCELLED jobs as new, linked jobs"
    )
    retry.add_argument("id", nargs="?", help="the job to re-run")
    retry.add_argument("--queue", action="append", help="only this queue (repeatable)")
    retry.add_argument("--state", action="append", type=_state, help="only this state (repeatable)")
    retry.add_argument("--limit", type=_whole(0, MAX_RETRY_JOBS), default=MAX_RETRY_JOBS)
    retry.set_defaults(run=commands.retry)
    moved = sub.add_parser("reschedule", parents=[common], help="move a job not started yet")
    moved.add_argument("id")
    moved.add_argument("when", help="ISO time (naive: UTC), or from now: 90s, 15m, 2h")
    moved.set_defaults(run=commands.reschedule)
    purge = sub.add_parser(
        "purge", parents=[common], help="cancel a queue's waiting jobs, delete their messages"
    )
    purge.add_argument("queue")
    purge.set_defaults(run=commands.purge)
    clean = sub.add_parser("clean", parents=[common], help="remove settled jobs")
    clean.add_argument("--queue", action="append", help="only this queue (repeatable)")
    clean.add_argument("--older-than", help="only jobs settled longer ago, e.g. 7d, 12h, 30m")
    clean.set_defaults(run=commands.clean)
    queues = sub.add_parser("queues", parents=[common], help="jobs by state, workers per queue")
    queues.set_defaults(run=commands.queues)
    controls.add_parsers(sub, common)
    dead = sub.add_parser("dead-letters", parents=[common], help="messages refused as not jobs")
    dead.add_argument("--take", type=_whole(0, MAX_DEAD_LETTERS), default=20)
    dead.set_defaults(run=commands.dead_letters)
    reap = sub.add_parser("reap", parents=[common], help="hand back jobs of lost workers now")
    reap.set_defaults(run=commands.reap)
    schedules = sub.add_parser(
        "schedules", parents=[common], help="scheduled tasks: list; run, enable, disable one"
    )
    schedules.add_argument("action", nargs="?", choices=["run", "enable", "disable"])
    schedules.add_argument("id", nargs="?", help="the scheduled task's id")
    schedules.set_defaults(run=run_schedules)
    check = sub.add_parser("check", parents=[common], help="dangerous settings")
    check.add_argument("--longest-job", help="longest job or retry delay, e.g. 2h")
    check.set_defaults(run=commands.check)
    dashboard.add_parser(sub, common)
    worker = sub.add_parser("worker", help="a Celery worker for the queues MODULE starts")
    worker.add_argument("module", help="MODULE[:ATTR] that builds the strategy and starts queues")
    worker.add_argument("--queues", help="comma-separated queue names to run (default: all)")
    worker.add_argument("--pool", default="prefork", choices=["prefork", "threads", "solo"])
    worker.add_argument("--concurrency", type=_whole(1, MAX_CONCURRENCY))
    worker.add_argument("--graceful-timeout", type=_seconds, default=DEFAULT_GRACEFUL_TIMEOUT_S)
    worker.add_argument(
        "--health-port", type=_whole(0, MAX_PORT), help="answer GET /health on this port"
    )
    worker.add_argument(
        "--health-host", help=f"address /health listens on (default {HEALTH_HOST.default})"
    )
    worker.add_argument("--loglevel", default="INFO")
    worker.add_argument("-n", "--hostname", help="Celery node name, e.g. jobs@%%h")
    return parser


def _common_options(parser: argparse.ArgumentParser, default: object) -> None:
    app_help = "MODULE[:ATTR] whose CeleryJobQueueStrategy to use"
    parser.add_argument("--app", default=default, help=app_help)
    json_default = False if default is None else default
    parser.add_argument("--json", action="store_true", default=json_default, help="print JSON")


if __name__ == "__main__":
    sys.exit(main())
