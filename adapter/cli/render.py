"""Text for people and JSON for scripts: how the command line shows jobs."""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from adapter.job import Job, JobState

#: Characters in a progress bar.
BAR_WIDTH = 20
_DURATION = re.compile(r"(\d+(?:\.\d+)?)([smhdw])")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_duration(text: str) -> timedelta:
    """Return ``"90s"``, ``"15m"``, ``"2h"``, ``"7d"``, ``"1w"`` or ``"1h30m"`` as a timedelta."""
    parts = _DURATION.findall(text.strip())
    if not parts or "".join(n + u for n, u in parts) != text.strip():
        raise ValueError(f"not a duration: {text!r} (use e.g. 90s, 15m, 2h, 7d)")
    return sum((timedelta(**{_UNITS[unit]: float(n)}) for n, unit in parts), timedelta())


def progress_bar(progress: float) -> str:
    """Return ``[#####.....]`` for a percentage."""
    filled = int(BAR_WIDTH * min(max(progress, 0), 100) / 100)
    return "[" + "#" * filled + "." * (BAR_WIDTH - filled) + "]"


def job_json(job: Job) -> dict[str, Any]:
    """Return the job as Vendure's camelCase JSON, with isSettled and duration."""
    return {**job.to_wire(), "isSettled": job.is_settled, "duration": job.duration}


def dumps(value: Any) -> str:
    """Return ``value`` as indented JSON."""
    return json.dumps(value, indent=2, sort_keys=False, default=str)


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """Return rows as left-aligned columns under their headers."""
    cells = [[str(h) for h in headers], *[[_cell(v) for v in row] for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in cells]
    return "\n".join(line.rstrip() for line in lines)


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, JobState):
        return value.value
    return str(value)


def job_rows(jobs: Sequence[Job]) -> list[list[Any]]:
    """Return one table row per job for ``list``."""
    return [
        [
            job.id,
            job.queue_name,
            job.state,
            f"{job.progress:.0f}%",
            f"{job.attempts}/{job.retries + 1}",
            job.created_at.strftime("%Y-%m-%d %H:%M:%S"),
            f"{job.duration} ms",
        ]
        for job in jobs
    ]


JOB_HEADERS = ("ID", "QUEUE", "STATE", "PROGRESS", "ATTEMPTS", "CREATED (UTC)", "DURATION")


def job_details(fields: dict[str, Any]) -> str:
    """Return every field of one job (``job_json`` and more), a line each, for ``show``."""
    width = max(len(key) for key in fields)
    return "\n".join(
        f"{key.ljust(width)}  {json.dumps(value, default=str)}" for key, value in fields.items()
    )
