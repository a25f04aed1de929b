"""Jobs as the API shows them: Vendure's camelCase JSON, configured data keys redacted, and
the dashboard's list query (Vendure's JobListOptions plus a text search in data or error).

``find_many`` has no filter on data or error; ``search`` answers a ``text`` by reading the jobs
the other filters match, newest first, at most ``SCAN_LIMIT`` of them, and paging the ones whose
data or error holds the text (ignoring case). The reply says ``scanned`` and ``truncated`` so a
reader knows when older jobs were not looked at.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from adapter.job import Job
from adapter.listing import MAX_TAKE, JobList, page_bounds, parse_list_options
from adapter.masking import MASK

#: Most jobs one text search reads.
SCAN_LIMIT = 10_000


class JobFinder(Protocol):
    """What listing needs of a strategy."""

    def find_many(self, options: Mapping[str, Any] | None = None) -> JobList:
        """Vendure's findMany."""
        ...  # pragma: no cover


@dataclass(frozen=True)
class Redaction:
    """Data and result keys (any depth, any case) whose values are never shown."""

    keys: frozenset[str] = frozenset()

    @classmethod
    def of(cls, keys: Iterable[str]) -> Redaction:
        """Return the redaction of ``keys``."""
        return cls(frozenset(key.strip().lower() for key in keys if key.strip()))

    def apply(self, value: Any) -> Any:
        """Return ``value`` with the value of every redacted key replaced by the mask."""
        if not self.keys:
            return value
        if isinstance(value, dict):
            return {
                key: MASK if str(key).lower() in self.keys else self.apply(item)
                for key, item in value.items()
            }
        if isinstance(value, list):
            return [self.apply(item) for item in value]
        return value


def job_json(job: Job, redaction: Redaction) -> dict[str, Any]:
    """Return ``job`` as the API shows it: ``to_wire`` plus Vendure's derived fields."""
    wire = job.to_wire()
    wire["data"] = redaction.apply(wire.get("data"))
    wire["result"] = redaction.apply(wire.get("result"))
    wire["duration"] = job.duration
    wire["isSettled"] = job.is_settled
    return wire


def search(finder: JobFinder, options: Mapping[str, Any], text: str | None) -> dict[str, Any]:
    """Return a page of jobs for ``options`` (JobListOptions), kept to those holding ``text``."""
    if not text or not text.strip():
        page = finder.find_many(options)
        return {"items": page.items, "totalItems": page.total_items}
    skip, take = page_bounds(parse_list_options(options))
    needle = text.strip().lower()
    found: list[Job] = []
    scanned = 0
    total = None
    while total is None or scanned < min(total, SCAN_LIMIT):
        batch = finder.find_many({**options, "skip": scanned, "take": MAX_TAKE})
        total = batch.total_items
        if not batch.items:
            break
        scanned += len(batch.items)
        found.extend(job for job in batch.items if _holds(job, needle))
    return {
        "items": found[skip : skip + take],
        "totalItems": len(found),
        "scanned": scanned,
        "truncated": total is not None and total > scanned,
    }


def _holds(job: Job, needle: str) -> bool:
    for value in (job.data, job.error):
        if value is None:
            continue
        text = value if isinstance(value, str) else json.dumps(value, default=str)
        if needle in text.lower():
            return True
    return False


def all_ids(finder: JobFinder, options: Mapping[str, Any]) -> list[str]:
    """Return the ids of every job ``options``' filter matches (skip and take ignored)."""
    base = {key: value for key, value in options.items() if key not in ("skip", "take")}
    ids: list[str] = []
    while True:
        page = finder.find_many({**base, "skip": len(ids), "take": MAX_TAKE})
        ids.extend(job.id for job in page.items if job.id is not None)
        if not page.items or len(ids) >= page.total_items:
            return ids
