"""JobQueueService and JobQueue: Vendure's service layer over any JobQueueStrategy.

Application code creates its queues through one ``JobQueueService`` per process (reference §4):

- ``create_queue(name, process)`` prepends the service's ``prefix`` to the name; everything
  after that (``active_queues``, buffers, ``find_many`` filters) sees the prefixed name.
- Only a started service processes jobs: ``start()`` starts every queue whose name passes
  ``active_queues`` (empty = all), including queues created later. Adding jobs works in any
  process, started or not.
- ``JobQueue.add`` offers each job to the registered buffers first (adapter.buffer); a
  collected job is returned with id ``"buffered"`` and not published until ``flush``. With
  ``transaction=`` it is published only once that transaction commits (adapter.transaction).
- With ``error_handlers``, a process that raises is reported to each handler's
  ``handle_worker_error(error, job)`` before the error goes on to the strategy. The process is
  then wrapped, which a prefork worker cannot import: start such queues before the pool forks.

The service does not own the strategy: call ``strategy.destroy()`` after ``stop()``.
"""

from __future__ import annotations

import functools
import inspect
import logging
import threading
import uuid
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from adapter.buffer import InMemoryJobBufferStorage, JobBuffer, JobBufferService, JobBufferStorage
from adapter.bulk import checked_batch
from adapter.control import UNCHANGED, ControllableStrategy, Unchanged, controllable
from adapter.deadlines import check_timeout
from adapter.errors import InvalidJobError, JobQueueError
from adapter.job import Job, utcnow, validate_queue_name
from adapter.scheduling.service import ScheduledTasks
from adapter.strategy import InspectableJobQueueStrategy, JobQueueStrategy, ProcessFunction
from adapter.subscribable import JobFinder, SubscribableJob
from adapter.timing import Timing
from adapter.transaction import on_commit

logger = logging.getLogger(__name__)

#: Id of the job ``add`` returns when a buffer collected it (Vendure's value).
BUFFERED_JOB_ID = "buffered"


class ErrorHandler(Protocol):
    """Told about every exception a process raises (Vendure's ErrorHandlerStrategy)."""

    def handle_worker_error(self, error: Exception, job: Job) -> None:
        """React to ``error`` raised by the process running ``job``."""


@dataclass(frozen=True)
class JobQueueInfo:
    """A created queue and whether this process runs it."""

    name: str
    running: bool
    #: Paused in the store: no worker starts its jobs (``pause_queue``).
    paused: bool = False


class JobQueue:
    """A named queue: add jobs to it from anywhere; the service starts it where it runs."""

    def __init__(
        self,
        name: str,
        process: ProcessFunction,
        strategy: JobQueueStrategy,
        buffers: JobBufferService,
    ) -> None:
        self._name = name
        self._process = process
        self._strategy = strategy
        self._buffers = buffers
        self._lock = threading.Lock()
        self._started = False

    @property
    def name(self) -> str:
        """The queue name, prefix included."""
        return self._name

    @property
    def started(self) -> bool:
        """True while this process runs the queue's process function."""
        return self._started

    def start(self) -> None:
        """Run the process function over this queue's jobs (idempotent)."""
        with self._lock:
            if not self._started:
                self._strategy.start(self._name, self._process)
                self._started = True

    def stop(self) -> None:
        """Stop running this queue here; its jobs stay queued (idempotent)."""
        with self._lock:
            if self._started:
                self._strategy.stop(self._name, self._process)
                self._started = False

    def add(
        self,
        data: Any = None,
        retries: int = 0,
        transaction: object | None = None,
        *,
        delay: float | None = None,
        run_at: datetime | None = None,
        priority: int | None = None,
        unique_key: str | None = None,
        debounce: float | None = None,
        timeout: float | None = None,
    ) -> SubscribableJob:
        """Add a job with ``data``; it is attempted at most ``retries`` + 1 times.

        Returns the job as published, in state PENDING. A job a buffer collected comes back
        with id ``"buffered"``. With ``transaction`` (a SQLAlchemy Session or a Django
        connection) the job gets its final id now but is published only once that transaction
        commits, and never if it rolls back. ``delay``/``run_at``, ``priority``,
        ``unique_key`` and ``debounce``: when and how often it runs (``adapter.timing``).
        ``timeout``: seconds each attempt may run (``adapter.deadlines``), the job's own.
        """
        if transaction is not None and (unique_key is not None or debounce is not None):
            raise InvalidJobError(
                "unique_key and debounce cannot wait for a transaction: the job they return "
                "is known only when added"
            )
        timing = Timing(delay, run_at, priority, unique_key, debounce)
        timeout = check_timeout(timeout)
        job = timing.apply(Job(queue_name=self._name, data=data, retries=retries, timeout=timeout))
        if debounce is not None:  # the waiting job with the key takes this data: the strategy's
            added = self._strategy.add(job, debounce=debounce)  # type: ignore[call-arg]
            return _subscribable(added, self._strategy)
        collectors = self._buffers.collectors(job)
        if collectors:
            publish: Callable[[], object] = functools.partial(self._buffers.store, collectors, job)
            added = job.model_copy(update={"id": BUFFERED_JOB_ID})
        elif transaction is not None:
            added = job.model_copy(update={"id": str(uuid.uuid4())})
            publish = functools.partial(self._strategy.add, added.snapshot())
        else:
            return _subscribable(self._strategy.add(job), self._strategy)
        if transaction is None:
            publish()
        else:
            on_commit(transaction, publish)
        return _subscribable(added, self._strategy)

    def add_many(
        self,
        datas: Iterable[Any],
        retries: int = 0,
        transaction: object | None = None,
        *,
        delay: float | None = None,
        run_at: datetime | None = None,
        priority: int | None = None,
        timeout: float | None = None,
    ) -> list[SubscribableJob]:
        """Add one job per item of ``datas``, all published at once (``strategy.add_many``).

        As ``add`` for each job, in order: buffers collect theirs first, and with
        ``transaction`` the jobs get their ids now and are published once it commits. Every
        job is checked before any is added: a bad one raises, naming its index (``jobs[3]``).
        ``delay``/``run_at``, ``priority`` and ``timeout`` apply to every job, as in ``add``.
        """
        timing = Timing(delay, run_at, priority)
        timeout = check_timeout(timeout)
        now = utcnow()
        jobs = checked_batch(
            timing.apply(
                Job(queue_name=self._name, data=data, retries=retries, timeout=timeout), now
            )
            for data in datas
        )
        results: list[Job] = []
        publish: list[Job] = []
        for job in jobs:
            collectors = self._buffers.collectors(job)
            if collectors:
                self._buffers.store(collectors, job)
                results.append(job.model_copy(update={"id": BUFFERED_JOB_ID}))
                continue
            if transaction is not None:
                job = job.model_copy(update={"id": str(uuid.uuid4())}).snapshot()
            publish.append(job)
            results.append(job)
        if transaction is not None:
            on_commit(transaction, functools.partial(self._strategy.add_many, publish))
        elif publish:
            added = iter(self._strategy.add_many(publish))
            results = [job if job.id == BUFFERED_JOB_ID else next(added) for job in results]
        return [_subscribable(job, self._strategy) for job in results]


class JobQueueService(ScheduledTasks):
    """Creates the queues of this process and starts those it should run."""

    def __init__(
        self,
        strategy: JobQueueStrategy,
        active_queues: Iterable[str] = (),
        prefix: str = "",
        *,
        buffer_storage: JobBufferStorage | None = None,
        error_handlers: Sequence[ErrorHandler] = (),
    ) -> None:
        """Bind the service to ``strategy``.

        Args:
            strategy: publishes and runs the jobs.
            active_queues: the (prefixed) queue names this process may run; empty = all.
            prefix: prepended to every queue name given to ``create_queue``.
            buffer_storage: where buffered jobs wait; default: in this process's memory.
            error_handlers: told about every exception a process raises.
        """
        self.strategy = strategy
        self._active_queues = frozenset(active_queues)
        self._prefix = prefix
        self._error_handlers = tuple(error_handlers)
        self._buffers = JobBufferService(strategy, buffer_storage or InMemoryJobBufferStorage())
        self._lock = threading.Lock()
        self._queues: list[JobQueue] = []
        self._started = False

    @property
    def started(self) -> bool:
        """True between ``start()`` and ``stop()``."""
        return self._started

    def create_queue(
        self,
        name: str,
        process: ProcessFunction,
        *,
        concurrency: int | Unchanged | None = UNCHANGED,
        rate_limit: str | Unchanged | None = UNCHANGED,
        timeout: float | None = None,
    ) -> JobQueue:
        """Create the queue ``prefix + name``; start it now if the service runs and it is active.

        ``concurrency`` and ``rate_limit``, when given, are stored as the queue's cluster-wide
        limits (``adapter.control``; a strategy that cannot keep them raises). ``timeout``:
        seconds each attempt of its jobs may run (``adapter.deadlines``).
        """
        queue_name = validate_queue_name(self._prefix + name)
        if concurrency is not UNCHANGED or rate_limit is not UNCHANGED:
            controllable(self.strategy).set_queue_limits(
                queue_name, concurrency=concurrency, rate_limit=rate_limit
            )
        if timeout is not None:
            _timed(self.strategy).set_queue_timeout(queue_name, timeout)
        if self._error_handlers:
            process = _reporting_errors(process, self._error_handlers)
        queue = JobQueue(queue_name, process, self.strategy, self._buffers)
        with self._lock:
            self._queues.append(queue)
            start_now = self._started and self._is_active(queue_name)
        if start_now:
            queue.start()
        return queue

    def start(self) -> None:
        """Start every active queue, and from now on each active queue as it is created."""
        with self._lock:
            self._started = True
            queues = list(self._queues)
        for queue in queues:
            if self._is_active(queue.name):
                queue.start()

    def stop(self) -> None:
        """Stop every queue this service started."""
        with self._lock:
            self._started = False
            queues = list(self._queues)
        for queue in queues:
            queue.stop()

    def get_job_queues(self) -> list[JobQueueInfo]:
        """Return every created queue, whether this process runs it and whether it is paused."""
        with self._lock:
            queues = list(self._queues)
        controls = (
            self.strategy.queue_controls()
            if isinstance(self.strategy, ControllableStrategy)
            else {}
        )
        return [
            JobQueueInfo(
                name=queue.name,
                running=queue.started,
                paused=queue.name in controls and controls[queue.name].paused,
            )
            for queue in queues
        ]

    def pause_queue(self, name: str) -> None:
        """Pause the queue ``prefix + name`` on every worker (stored; adds still succeed)."""
        controllable(self.strategy).pause_queue(validate_queue_name(self._prefix + name))

    def resume_queue(self, name: str) -> None:
        """Resume the queue ``prefix + name``: its waiting jobs run."""
        controllable(self.strategy).resume_queue(validate_queue_name(self._prefix + name))

    def add_buffer(self, buffer: JobBuffer) -> None:
        """Register ``buffer``; raise ConfigurationError if its id is taken."""
        self._buffers.add_buffer(buffer)

    def remove_buffer(self, buffer: JobBuffer | str) -> None:
        """Unregister a buffer (given or by id); jobs it holds stay until flushed by id."""
        self._buffers.remove_buffer(buffer)

    def buffer_size(self, *buffers: JobBuffer | str) -> dict[str, int]:
        """Return how many jobs the given buffers (default: all registered) hold, by id."""
        return self._buffers.buffer_size(*buffers)

    def flush(self, *buffers: JobBuffer | str) -> list[SubscribableJob]:
        """Empty the given buffers (default: all registered) and publish what they reduce to."""
        return [_subscribable(job, self.strategy) for job in self._buffers.flush(*buffers)]

    def _is_active(self, queue_name: str) -> bool:
        return not self._active_queues or queue_name in self._active_queues


def _timed(strategy: JobQueueStrategy) -> Any:
    """Return ``strategy`` if it takes timeouts (``CeleryJobQueueStrategy`` does)."""
    if not callable(getattr(strategy, "set_queue_timeout", None)):
        raise TypeError(f"timeout: {type(strategy).__name__} has no timeouts")
    return strategy


def _subscribable(job: Job, strategy: JobQueueStrategy) -> SubscribableJob:
    """Return ``job`` as a SubscribableJob following it through ``strategy``."""
    if isinstance(job, SubscribableJob):
        return job
    finder: JobFinder = (
        strategy if isinstance(strategy, InspectableJobQueueStrategy) else _NoFinder(strategy)
    )
    return SubscribableJob.wrap(job, finder)


class _NoFinder:
    """Stands in for a strategy that cannot look jobs up: ``updates()`` raises when polled."""

    def __init__(self, strategy: JobQueueStrategy) -> None:
        self._strategy = strategy

    def find_one(self, job_id: str) -> Job | None:
        raise JobQueueError(
            f"{type(self._strategy).__name__} is not inspectable: job updates are unavailable"
        )


def _reporting_errors(process: ProcessFunction, handlers: Sequence[ErrorHandler]) -> Any:
    """Wrap ``process`` so every exception it raises is reported to ``handlers``, then re-raised."""

    @functools.wraps(process)
    def run(job: Job) -> Any:
        try:
            outcome = process(job)
        except Exception as err:
            _report(handlers, err, job)
            raise
        if inspect.isawaitable(outcome):
            return _awaited(outcome, handlers, job)
        return outcome

    return run


async def _awaited(outcome: Awaitable[Any], handlers: Sequence[ErrorHandler], job: Job) -> Any:
    try:
        return await outcome
    except Exception as err:
        _report(handlers, err, job)
        raise


def _report(handlers: Sequence[ErrorHandler], error: Exception, job: Job) -> None:
    for handler in handlers:
        try:
            handler.handle_worker_error(error, job)
        except Exception:
            logger.exception("error handler %r failed on job %s", handler, job.id)
