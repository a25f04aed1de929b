"""The queue-control commands: ``pause``, ``resume`` and ``limit`` (``adapter.control``).

Each changes the controls stored for a queue (every worker follows them within about a
second) and prints them as stored now.
"""

from __future__ import annotations

import argparse
from typing import Any, TextIO

from adapter.celery import CeleryJobQueueStrategy
from adapter.cli.render import dumps
from adapter.control import UNCHANGED, QueueControl, Unchanged, check_concurrency
from adapter.job import validate_queue_name

#: What ``limit`` takes for "no limit".
NO_LIMIT = "none"


def pause(args: argparse.Namespace, strategy: CeleryJobQueueStrategy, out: TextIO) -> int:
    """``pause QUEUE``: no worker starts the queue's jobs until ``resume``; adds still work."""
    return _show(args, out, strategy.pause_queue(validate_queue_name(args.queue)))


def resume(args: argparse.Namespace, strategy: CeleryJobQueueStrategy, out: TextIO) -> int:
    """``resume QUEUE``: the queue's waiting jobs run again."""
    return _show(args, out, strategy.resume_queue(validate_queue_name(args.queue)))


def limit(args: argparse.Namespace, strategy: CeleryJobQueueStrategy, out: TextIO) -> int:
    """``limit QUEUE [--concurrency N|none] [--rate N/s|N/m|N/h|none]``: cluster-wide limits."""
    concurrency: int | Unchanged | None = UNCHANGED
    if args.concurrency is not None:
        text = args.concurrency.strip()
        concurrency = None if text == NO_LIMIT else check_concurrency(_number(text))
    rate: str | Unchanged | None = UNCHANGED
    if args.rate is not None:
        rate = None if args.rate == NO_LIMIT else args.rate
    changed = strategy.set_queue_limits(
        validate_queue_name(args.queue), concurrency=concurrency, rate_limit=rate
    )
    return _show(args, out, changed)


def describe(control: QueueControl) -> str:
    """One line for a queue's controls: ``paused, concurrency 2, rate 100/m`` or ``-``."""
    parts = ["paused"] if control.paused else []
    if control.concurrency is not None:
        parts.append(f"concurrency {control.concurrency}")
    if control.rate_limit is not None:
        parts.append(f"rate {control.rate_limit}")
    return ", ".join(parts) or "-"


def _number(text: str) -> int | str:
    """The number in ``text``, or the text itself for ``check_concurrency`` to name."""
    return int(text) if text.isdigit() else text


def _show(args: argparse.Namespace, out: TextIO, control: QueueControl) -> int:
    if args.json:
        out.write(dumps({args.queue: control.as_dict()}) + "\n")
    else:
        out.write(f"{args.queue}: {describe(control)}\n")
    return 0


def add_parsers(sub: Any, common: argparse.ArgumentParser) -> None:
    """Add ``pause``, ``resume`` and ``limit`` to the ``jobqueue`` parser."""
    for name, run, text in [
        ("pause", pause, "start no new job of a queue, on every worker"),
        ("resume", resume, "run a paused queue's jobs again"),
    ]:
        one = sub.add_parser(name, parents=[common], help=text)
        one.add_argument("queue")
        one.set_defaults(run=run)
    limits = sub.add_parser("limit", parents=[common], help="cluster-wide limits of a queue")
    limits.add_argument("queue")
    limits.add_argument("--concurrency", help="jobs running at once across workers, or none")
    limits.add_argument("--rate", help="starts per window: N/s, N/m, N/h, or none")
    limits.set_defaults(run=limit)
