"""The Celery workers seen now, for the dashboard: host, job queues consumed, running jobs.

One broadcast of ``inspect`` (``active_queues`` and ``active``) answers every worker at once.
A job's task id is its job id, so a worker's active ``adapter.run_job`` tasks are its running
jobs.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any

from celery import Celery
from kombu.exceptions import OperationalError

from adapter.celery.app import shown_broker_url
from adapter.celery.envelope import TASK_NAME
from adapter.celery.routing import queue_name_of
from adapter.errors import BrokerError

#: Seconds to wait for workers' replies.
INSPECT_TIMEOUT_S = 1.0
#: Seconds an answer is reused before the workers are asked again.
MAX_AGE_S = 3.0


@dataclass
class WorkerInfo:
    """One worker: its node name, the job queues it consumes, the jobs it runs now."""

    hostname: str
    queues: list[str] = field(default_factory=list)
    running_jobs: list[str] = field(default_factory=list)

    def to_wire(self) -> dict[str, Any]:
        """Return the worker as camelCase JSON."""
        return {"hostname": self.hostname, "queues": self.queues, "runningJobs": self.running_jobs}


class WorkerInspector:
    """Asks the workers of a Celery app what they consume and run, at most every ``max_age_s``.

    A broadcast waits its whole timeout for replies, so a page polling every second or two
    reuses the last answer while it is younger than ``max_age_s``.
    """

    def __init__(
        self, app: Celery, timeout: float = INSPECT_TIMEOUT_S, max_age_s: float = MAX_AGE_S
    ) -> None:
        self.app = app
        self.timeout = timeout
        self.max_age_s = max_age_s
        self._lock = threading.Lock()
        self._last: tuple[float, list[WorkerInfo]] | None = None

    def workers(self) -> list[WorkerInfo]:
        """Return the workers answering now (or ``max_age_s`` ago at most), by node name."""
        with self._lock:
            if self._last is not None and time.monotonic() - self._last[0] < self.max_age_s:
                return self._last[1]
            found = self._ask()
            self._last = (time.monotonic(), found)
            return found

    def _ask(self) -> list[WorkerInfo]:
        try:
            inspect = self.app.control.inspect(timeout=self.timeout)
            queues = inspect.active_queues() or {}
            active = inspect.active() or {}
        except (OperationalError, OSError) as err:
            raise BrokerError(
                f"cannot reach the broker {shown_broker_url(self.app)} to ask its workers: {err}"
            ) from err
        found: dict[str, WorkerInfo] = {}
        for hostname, consumed in queues.items():
            info = found.setdefault(hostname, WorkerInfo(hostname))
            names = (queue_name_of(queue.get("name", "")) for queue in consumed)
            info.queues = sorted(name for name in names if name is not None)
        for hostname, tasks in active.items():
            info = found.setdefault(hostname, WorkerInfo(hostname))
            info.running_jobs = [
                task["id"] for task in tasks if task.get("name") == TASK_NAME and task.get("id")
            ]
        return [found[name] for name in sorted(found)]
