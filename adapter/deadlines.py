"""Timeouts of job attempts: which one applies, when it is due, what the process is told.

Broker-agnostic (no Celery here). A job attempt may run for ``timeout`` seconds, taken from
the first of: the job's own (``add(job, timeout=...)``, carried in its message), its queue's
(``Timeouts.set_queue``, ``create_queue(..., timeout=)``), the worker-wide default
(``adapter_job_timeout``); none of them: no timeout. The worker's main process resolves it
once per message (``Timeouts.resolve``) and hands the value to the pool with the request, so
the process running the job and the watchdog (``adapter.celery.watchdog``) agree on it.

At the timeout the running process is told, as a cancel tells it (``adapter.running``'s
thread calls ``job.time_out``): ``job.raise_if_cancelled()`` raises ``JobTimeLimitError``
"timed out after N s" from then on, and the attempt fails with that error whatever the process
returns (``Lifecycle.attempt``). After ``adapter_stop_grace`` more seconds the watchdog stops it
by force where the pool can, and records the failure itself (retried while retries remain).
"""

from __future__ import annotations

import math
import threading

from adapter.errors import JobTimeLimitError
from adapter.job import MAX_TIMEOUT_S


def check_timeout(value: object, name: str = "timeout") -> float | None:
    """Return ``value`` as seconds (None: no timeout); ValueError naming ``name`` otherwise."""
    if value is None:
        return None
    seconds = float(value) if isinstance(value, int | float) else math.nan
    if isinstance(value, bool) or not (math.isfinite(seconds) and 0 < seconds <= MAX_TIMEOUT_S):
        raise ValueError(
            f"{name} must be a number of seconds > 0 and at most {MAX_TIMEOUT_S}, not {value!r}"
        )
    return seconds


def timeout_error(seconds: float) -> JobTimeLimitError:
    """Return the error of an attempt that ran out of its ``seconds``."""
    return JobTimeLimitError(f"timed out after {seconds:g} s")


class Timeouts:
    """The timeouts of one strategy: a default, one per queue, and the grace before force."""

    def __init__(self, default: float | None, grace: float) -> None:
        self.default = default
        self.grace = grace
        self._lock = threading.Lock()
        self._per_queue: dict[str, float] = {}

    def set_queue(self, queue_name: str, seconds: float | None) -> None:
        """Give ``queue_name``'s attempts ``seconds`` each (None: back to the default)."""
        checked = check_timeout(seconds, f"timeout of queue {queue_name!r}")
        with self._lock:
            if checked is None:
                self._per_queue.pop(queue_name, None)
            else:
                self._per_queue[queue_name] = checked

    def of_queue(self, queue_name: str) -> float | None:
        """The timeout of ``queue_name``'s attempts, without a job's own."""
        with self._lock:
            return self._per_queue.get(queue_name, self.default)

    def resolve(self, queue_name: str | None, job_timeout: object) -> float | None:
        """The timeout of one attempt: the job's own when valid, else its queue's."""
        try:
            own = check_timeout(job_timeout)
        except ValueError:
            own = None  # a foreign producer's bad header: the queue's timeout applies
        if own is not None:
            return own
        return self.of_queue(queue_name) if queue_name else self.default


class Deadlines:
    """When each watched attempt runs out of time (not thread-safe: its owner locks)."""

    def __init__(self) -> None:
        self._due: dict[str, tuple[float, float]] = {}  # job id -> (monotonic due, seconds)

    def add(self, job_id: str, seconds: float | None, now: float) -> None:
        """Watch ``job_id``, started at ``now``, for ``seconds`` (None: no deadline)."""
        if seconds is not None:
            self._due[job_id] = (now + seconds, seconds)

    def remove(self, job_id: str) -> None:
        """Forget ``job_id``."""
        self._due.pop(job_id, None)

    def overdue(self, now: float) -> list[tuple[str, float]]:
        """Return (and forget) the jobs out of time at ``now``, each with its timeout."""
        due = [(job_id, seconds) for job_id, (at, seconds) in self._due.items() if at <= now]
        for job_id, _ in due:
            del self._due[job_id]
        return due
