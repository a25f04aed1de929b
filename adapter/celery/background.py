"""What a worker runs beside its consumer: the reaper and, unless disabled, the scheduler.

Started as the consumer binds (a ``celery worker``, or an embedded worker) and stopped as it
unbinds, so a process that only adds jobs (a web app) runs neither.
"""

from __future__ import annotations

from typing import Protocol


class Background(Protocol):
    """A thread with an idempotent ``start`` and a ``stop`` (reaper, scheduler)."""

    def start(self) -> None:
        """Start it, or leave it running."""

    def stop(self) -> None:
        """Stop it; work in progress finishes."""


class WorkerThreads:
    """Starts and stops a worker's background threads together."""

    def __init__(self, *threads: Background | None) -> None:
        """Run ``threads``; a None (a disabled one) is skipped."""
        self._threads = [thread for thread in threads if thread is not None]

    def start(self) -> None:
        """Start every thread (the consumer bound)."""
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        """Stop every thread (the consumer unbound)."""
        for thread in self._threads:
            thread.stop()
