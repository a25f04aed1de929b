"""Backoff strategies: how long a RETRYING job waits before its next attempt.

A backoff strategy is Vendure's ``(queue_name, attempts_made, job) -> milliseconds``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from adapter.job import Job

BackoffStrategy = Callable[[str, int, "Job"], float]

#: Delay of the default constant backoff, in milliseconds (Vendure's polling strategies: 1000).
DEFAULT_BACKOFF_MS = 1000


def constant_backoff(delay_ms: float = DEFAULT_BACKOFF_MS) -> BackoffStrategy:
    """Return a strategy that always waits ``delay_ms`` milliseconds."""

    def backoff(queue_name: str, attempts_made: int, job: Job) -> float:
        return delay_ms

    return backoff


def exponential_backoff(
    base_ms: float = DEFAULT_BACKOFF_MS, max_ms: float = 600_000
) -> BackoffStrategy:
    """Return a strategy waiting ``base_ms * 2 ** (attempts_made - 1)``, capped at ``max_ms``."""

    def backoff(queue_name: str, attempts_made: int, job: Job) -> float:
        return float(min(max_ms, base_ms * 2 ** max(attempts_made - 1, 0)))

    return backoff
