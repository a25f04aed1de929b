"""CeleryJobQueueStrategy: Vendure's job-queue interface on a Celery app.

- ``add`` and ``add_many`` publish Celery task messages and record the jobs PENDING
  (``adapter.celery.adding``: publish first and record in batches, or record first).
- ``start``/``stop`` edit the process registry: they declare which queues this process runs.
  In a Celery worker process (``celery -A module worker``, ``jobqueue worker``) the consumer
  bootstep follows it. Any other process (a web app importing the same module) runs no job,
  unless it asks for an embedded threads-pool worker: ``run_embedded_worker()`` (or
  ``embedded_worker=True``), which then runs its started queues.
- The app also gets the task ``adapter.add_job`` (``adapter.celery.add_task``), so Celery beat
  adds jobs on a schedule.
- ``find_one`` reads the store; ``cancel_job`` cancels in it, and so do Celery's ``revoke``
  of a job's id (``adapter.celery.controls``) and a purge of a job queue, which cancels its
  waiting jobs (``adapter.celery.purge``; ``purge`` does it in one step).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

import click
from celery import Celery
from kombu.exceptions import OperationalError

from adapter.backoff import BackoffStrategy, constant_backoff
from adapter.celery.add_task import register_add_task
from adapter.celery.adding import JobAdder
from adapter.celery.admission import Admission
from adapter.celery.app import (
    check_urls,
    listen_for_purges,
    shown_broker_url,
    use_adapter_transports,
)
from adapter.celery.background import WorkerThreads
from adapter.celery.batching import Batcher, BatchRunner, check_batch
from adapter.celery.consumer import ConsumerHandle, queue_control_step
from adapter.celery.controls import RevokeCanceller
from adapter.celery.embedded import EmbeddedWorker, prepare_filesystem_broker
from adapter.celery.envelope import TASK_NAME
from adapter.celery.gate import GatedLifecycle
from adapter.celery.health import health_step
from adapter.celery.observability import listen, metrics_step
from adapter.celery.orphans import OrphanRecovery
from adapter.celery.pausing import PauseFollower
from adapter.celery.poison import DeadLetterRecorder
from adapter.celery.promoter import Promoter
from adapter.celery.publish import JobPublisher
from adapter.celery.purge import purge_messages
from adapter.celery.reaper import Reaper
from adapter.celery.registry import ProcessRegistry
from adapter.celery.results import mark_revoked
from adapter.celery.routing import celery_queue, queue_name_of
from adapter.celery.task import register_task
from adapter.celery.watchdog import Watchdog
from adapter.celery.write_behind import WriteBehind
from adapter.control import UNCHANGED, QueueControl, Unchanged
from adapter.dead_letter import DeadLetter
from adapter.deadlines import Timeouts
from adapter.errors import (
    BrokerError,
    ConfigurationError,
    InvalidJobError,
    JobNotWaitingError,
)
from adapter.job import (
    Job,
    JobState,
    utcnow,
    validate_queue_name,
)
from adapter.lifecycle import Liveness
from adapter.listing import JobList, JobListOptions
from adapter.metrics.recorder import MetricsRecorder
from adapter.metrics.storage import metrics_storage
from adapter.running import RunningJobs
from adapter.scheduling.scheduler import Scheduler
from adapter.settings import AdapterSettings
from adapter.store import JobStore, open_store
from adapter.store.changes import Watch
from adapter.store.queues import queue_store_for
from adapter.strategy import InspectableJobQueueStrategy, ProcessFunction
from adapter.subscribable import SubscribableJob
from adapter.timing import Timing

logger = logging.getLogger(__name__)


class CeleryJobQueueStrategy(InspectableJobQueueStrategy):
    """Runs Vendure-style jobs as Celery tasks on ``app``'s broker and workers."""

    def __init__(
        self,
        app: Celery,
        *,
        store: JobStore | str | None = None,
        backoff_strategy: BackoffStrategy | None = None,
        concurrency: int = 1,
        embedded_worker: bool = False,
    ) -> None:
        """Bind the strategy to ``app``.

        Args:
            app: the Celery app, configured for example from ``celeryconfig.py``.
            store: a JobStore or its URL; default: the app's ``adapter_store_url`` setting.
            backoff_strategy: delay in ms before a retry; default constant 1000 ms.
            concurrency: threads of the embedded worker (a Celery worker uses its own).
            embedded_worker: run the started queues' jobs in this process, as
                ``run_embedded_worker()`` does; default: no, only Celery workers run jobs.
        """
        if TASK_NAME in app.tasks:
            raise ConfigurationError(
                f"app {app.main!r} already has a job queue strategy; create one per app"
            )
        self.app = app
        prepare_filesystem_broker(app)
        use_adapter_transports(app)
        check_urls(app)
        self._store = (
            store
            if isinstance(store, JobStore)
            else open_store(str(store or store_url_for(app.conf)))
        )
        self.backoff_strategy = backoff_strategy or constant_backoff()
        settings = AdapterSettings.from_conf(app.conf)
        self.max_data_bytes = settings.max_data_bytes
        self.timeouts = Timeouts(settings.job_timeout, settings.stop_grace)
        self.liveness = Liveness.from_conf(app.conf)
        running = RunningJobs(self._store, heartbeat_interval=self.liveness.heartbeat_interval)
        self.metrics = MetricsRecorder(metrics_storage(self._store))  # adapter.metrics
        self.queues = queue_store_for(self._store)  # pause, concurrency, rate limits
        self.lifecycle = GatedLifecycle(
            self.queues,
            self._store,
            self.liveness,
            self.backoff_strategy,
            running,
            metrics=self.metrics,
        )
        self._registry = ProcessRegistry()
        recorder = DeadLetterRecorder(self._store)
        self._batch_runner = BatchRunner(app, self._registry, self.lifecycle)
        self._batcher = Batcher(self._batch_runner, recorder.take)
        admission = Admission(
            recorder, self._registry, self.max_data_bytes, self._batcher, self.timeouts
        )
        self._task = register_task(
            app, self._registry, self.lifecycle, recorder, admission, self.timeouts
        )
        register_add_task(app, self)  # adapter.add_job: beat adds jobs by name
        self._publisher = JobPublisher(app, self._task)
        self._reaper = Reaper(
            self.lifecycle,
            self._publisher,
            OrphanRecovery(app, self._store, self._publisher, self.liveness),
        )
        #: The app's scheduled tasks (``adapter.scheduling``): its workers run them.
        self.scheduler = Scheduler.from_settings(self._store, settings)
        self._promoter = Promoter(self._store, self._publisher)  # delayed jobs, when due
        self._consumer = ConsumerHandle(
            self._registry, on_bind=self._on_consumer_bind, on_unbind=self._on_consumer_unbind
        )
        self._pauses = PauseFollower(self.queues, self._consumer, self._registry)
        self._watchdog = Watchdog(self._consumer, self._task, self.lifecycle, self.timeouts)
        #: What a worker runs beside its consumer, started and stopped with it.
        self._threads = WorkerThreads(
            self._reaper,
            self._pauses,
            self._watchdog,
            self._promoter,
            self.scheduler if settings.scheduler else None,
        )
        self._consumer.follow_worker_flags(app)
        self._revokes = RevokeCanceller(app, self.lifecycle)
        app.steps["consumer"].add(queue_control_step(self._consumer, recorder, self._revokes))
        app.steps["worker"].add(health_step(self._consumer, self._store))  # /health, /metrics
        app.steps["worker"].add(metrics_step(self.metrics))  # adapter_workers_up
        listen()
        listen_for_purges(app, self._cancel_purged)
        self._embedded = EmbeddedWorker(app, self._consumer, concurrency)
        self._embedded_wanted = embedded_worker
        self._write_behind = WriteBehind(self._store)
        self._adder = JobAdder(
            self._store,
            self._publisher,
            self._write_behind,
            self.max_data_bytes,
            finder=self,
            metrics=self.metrics,
        )

    @property
    def store(self) -> JobStore:
        """The job store; it holds every job ``add`` returned here (pending adds are written)."""
        self._write_behind.write_waiting()
        return self._store

    def add(
        self,
        job: Job,
        *,
        idempotency_key: str | None = None,
        delay: float | None = None,
        run_at: datetime | None = None,
        priority: int | None = None,
        unique_key: str | None = None,
        debounce: float | None = None,
        timeout: float | None = None,
    ) -> SubscribableJob:
        """Publish ``job``; with ``idempotency_key``, a repeated add returns the first job.

        ``delay`` seconds or ``run_at``: not started before then; ``priority`` 0-9, higher
        first; ``unique_key``: while a job with it waits, return that job; ``debounce``
        seconds (with a key): the waiting job takes this data and starts that much later
        (``adapter.timing``). ``timeout``: seconds each attempt may run (``adapter.deadlines``).
        See ``adapter.celery.adding.JobAdder.add``.
        """
        timing = Timing(delay, run_at, priority, unique_key, debounce)
        return self._adder.add(job, idempotency_key=idempotency_key, timing=timing, timeout=timeout)

    def set_queue_timeout(self, queue_name: str, timeout: float | None) -> None:
        """Give each attempt of ``queue_name``'s jobs ``timeout`` seconds (None: the default).

        Set it where the jobs run (the worker's module): a worker reads it per message.
        """
        self.timeouts.set_queue(validate_queue_name(queue_name), timeout)

    def add_many(
        self,
        jobs: Iterable[Job],
        *,
        delay: float | None = None,
        run_at: datetime | None = None,
        priority: int | None = None,
    ) -> list[SubscribableJob]:
        """Publish many new jobs at once (``adapter.celery.adding.JobAdder.add_many``)."""
        return self._adder.add_many(jobs, Timing(delay, run_at, priority))

    def reschedule_job(self, job_id: str, run_at: datetime) -> Job:
        """Move a job that has not started yet to ``run_at`` (naive: UTC); return it.

        JobNotWaitingError when the job is unknown, running or settled.
        """
        if not isinstance(run_at, datetime):
            raise InvalidJobError(f"run_at must be a datetime, got {run_at!r}")
        moved = self.store.mark_due(job_id, run_at if run_at.tzinfo else run_at.replace(tzinfo=UTC))
        if moved is None:
            found = self.store.get(job_id)
            state = "unknown" if found is None else found.state.value
            raise JobNotWaitingError(
                f"job {job_id} is {state}: only a job that has not started can be rescheduled"
            )
        return moved

    def flush(self) -> None:
        """Write now the jobs added here whose batch is not in the store yet.

        Other processes then see them; this one always does (every store access flushes).
        StoreError when the store could not record jobs added here since the last flush:
        their messages are published, and the worker that runs each records it.
        """
        self._write_behind.flush()

    def start(self, queue_name: str, process: ProcessFunction, *, batch: int | None = None) -> None:
        """Run ``queue_name``'s jobs with ``process``; ``batch=N``: N at a time per pool call.

        A batch queue is a high-throughput queue (``adapter.celery.batching``).
        """
        validate_queue_name(queue_name)
        size = None if batch is None else check_batch(queue_name, batch)
        if not callable(process):
            raise TypeError(f"process must be callable, got {process!r}")
        if size is not None:
            self._batcher.set_size(queue_name, size)
        active = _cli_launch.get()
        if isinstance(active, frozenset) and queue_name not in active:
            logger.info(
                "queue %r is not in this worker's active queues; not starting it", queue_name
            )
            return
        first = self._registry.add(
            queue_name, process, require_import_path=self._consumer.pool_is_prefork
        )
        if self._consumer.bound:
            if first:
                self._consumer.add(queue_name)
        elif self._runs_embedded_worker():
            self._embedded.start(self._registry.queue_names())
        if first:
            logger.info("started queue %r", queue_name)

    def run_embedded_worker(self) -> None:
        """Run this process's started queues here, on an embedded threads-pool worker.

        For a process that is not a Celery worker (a script, a development server): the queues
        started before this call and after it run here, ``concurrency`` jobs at a time, until
        ``destroy``. Where the ``celery`` or ``jobqueue`` command loaded the module, the call
        changes nothing: that command's own worker runs the jobs, or none runs.
        """
        self._embedded_wanted = True
        started = self._registry.queue_names()
        if started and not self._consumer.bound and self._runs_embedded_worker():
            self._embedded.start(started)

    def stop(self, queue_name: str, process: ProcessFunction) -> None:
        validate_queue_name(queue_name)
        if self._registry.remove(queue_name, process):
            self._consumer.cancel(queue_name)
            logger.info("stopped queue %r", queue_name)

    def pause_queue(self, queue_name: str) -> QueueControl:
        """Pause ``queue_name`` on every worker: no new job starts, adds wait (stored)."""
        return self._controlled(self.queues.set_control(queue_name, paused=True))

    def resume_queue(self, queue_name: str) -> QueueControl:
        """Resume a paused ``queue_name``: its waiting jobs run."""
        return self._controlled(self.queues.set_control(queue_name, paused=False))

    def set_queue_limits(
        self,
        queue_name: str,
        *,
        concurrency: int | Unchanged | None = UNCHANGED,
        rate_limit: str | Unchanged | None = UNCHANGED,
    ) -> QueueControl:
        """Set cluster-wide limits of ``queue_name`` (None: unlimited), stored, from now on.

        ``concurrency``: jobs RUNNING at once across all workers; ``rate_limit``: starts in any
        window, ``"N/s"``, ``"N/m"`` or ``"N/h"`` (``adapter.control``).
        """
        changed = self.queues.set_control(
            queue_name, concurrency=concurrency, rate_limit=rate_limit
        )
        return self._controlled(changed)

    def queue_controls(self) -> dict[str, QueueControl]:
        """Return the stored controls of every queue that has some."""
        return self.queues.controls()

    def _controlled(self, changed: QueueControl) -> QueueControl:
        """A control changed here: this process's jobs see it at once, others within 0.5 s."""
        self.lifecycle.controlled.forget()
        return changed

    def queue_counts(self) -> dict[str, dict[JobState, int]]:
        """Return, per queue with stored jobs, how many jobs are in each state."""
        return self.store.queue_counts()

    def consumers(self, timeout: float = 1.0) -> dict[str, list[str]]:
        """Return, per queue name, the Celery workers consuming it now (asks them; may be slow)."""
        try:
            replies = self.app.control.inspect(timeout=timeout).active_queues() or {}
        except (OperationalError, OSError) as err:
            raise BrokerError(
                f"cannot reach the broker {shown_broker_url(self.app)} to ask its workers: {err}"
            ) from err
        found: dict[str, list[str]] = {}
        for worker, queues in replies.items():
            for queue in queues:
                name = queue_name_of(queue.get("name", ""))
                if name is not None:
                    found.setdefault(name, []).append(worker)
        return found

    def running_queues(self) -> list[str]:
        """Return the queue names this process runs."""
        return self._registry.queue_names()

    def stop_consuming(self) -> None:
        """Stop taking new jobs of every queue (graceful shutdown); running jobs go on."""
        for queue_name in self._registry.queue_names():
            self._consumer.cancel(queue_name)

    def find_one(self, job_id: str) -> SubscribableJob | None:
        found = self.store.get(job_id)
        return None if found is None else SubscribableJob.wrap(found, self)

    def watch_job(self, job_id: str) -> Watch:
        """Return a watch woken when the job may have changed (``updates()`` waits on it)."""
        return self._store.watch(job_id)

    def peek_job(self, job_id: str) -> Job | None:
        """Return the job as stored now, this process's pending adds left to their batch.

        ``updates()`` reads so when woken: writing the batch first would race the worker's
        claim of the job it is waiting for (on PostgreSQL both commits then wait on the disk).
        """
        return self._store.get(job_id)

    def find_many(self, options: JobListOptions | Mapping[str, Any] | None = None) -> JobList:
        return self.store.find_many(options)

    def find_many_by_id(self, ids: Sequence[str]) -> list[Job]:
        return self.store.find_many_by_id(ids)

    def remove_settled_jobs(
        self, queue_names: Sequence[str] | None = None, older_than: datetime | None = None
    ) -> int:
        return self.store.remove_settled(queue_names, older_than)

    def cancel_job(self, job_id: str) -> Job | None:
        """Cancel a job: it never runs if not started, and a running process is told.

        A settled job is left as it is (the returned job shows its settled state).
        """
        before = self.store.get(job_id)
        if before is not None and before.is_settled:
            logger.info("job %s is already %s; cancelling changed nothing", job_id, before.state)
        if before is None or before.is_settled:
            return before
        cancelled = self.lifecycle.cancel(job_id)
        if cancelled is not None and cancelled.state == JobState.CANCELLED:
            mark_revoked(self.app, job_id)
        return cancelled

    def purge(self, queue_name: str) -> tuple[int, list[Job]]:
        """Delete the waiting messages of ``queue_name`` and cancel its waiting jobs.

        Returns how many messages were deleted and the jobs cancelled (PENDING or RETRYING
        ones created before the purge ended, their error saying why); running jobs run on.
        BrokerError when the broker cannot be reached (no job was cancelled).
        """
        validate_queue_name(queue_name)
        self.flush()  # jobs added here are in the store before their messages go
        try:
            with self.app.connection_for_write() as connection:
                deleted = purge_messages(connection, celery_queue(queue_name))
        except Exception as err:  # the broker's errors vary by transport
            raise BrokerError(f"could not purge queue {queue_name!r}: {err}") from err
        return deleted, self._cancel_purged(queue_name)

    def dead_letters(self, take: int = 100) -> list[DeadLetter]:
        """Return the latest messages workers refused to run (not jobs), newest first."""
        return self.store.dead_letters(take)

    def reap_lost_jobs(self) -> list[Job]:
        """Hand back now the jobs whose worker was lost (workers do it every heartbeat)."""
        return self._reaper.reap_once()

    def destroy(self) -> None:
        """Stop the embedded worker (running jobs finish) and close the store.

        A job still running after the stop's wait keeps the store open: its heartbeat and
        outcome must still be written, or another worker would take it for lost.
        """
        stopped = self._embedded.stop()
        self._reaper.stop()
        self.scheduler.stop()
        self._promoter.stop()
        self._batch_runner.close()
        try:
            self.flush()
            self.metrics.close()
        finally:
            if stopped:
                self._store.close()

    def _cancel_purged(self, queue_name: str) -> list[Job]:
        """The messages of ``queue_name`` were purged: cancel its waiting jobs."""
        cancelled = self.lifecycle.purged(queue_name, before=utcnow())
        for job in cancelled:
            mark_revoked(self.app, job.id or "")
        if cancelled:
            logger.warning(
                "cancelled %d waiting job(s) of %r: its messages were purged",
                len(cancelled),
                queue_name,
            )
        return cancelled

    def _on_consumer_bind(self) -> None:
        self._threads.start()

    def _on_consumer_unbind(self) -> None:
        self._threads.stop()

    def _runs_embedded_worker(self) -> bool:
        return self._embedded_wanted and _cli_launch.get() is False and not _inside_celery_cli()


def store_url_for(conf: Any) -> str:
    """Return the job store URL of a deployment (``AdapterSettings.job_store_url``)."""
    return AdapterSettings.from_conf(conf).job_store_url()


#: Set while the ``jobqueue`` command imports a module: no embedded worker is started, and
#: with ``active_queues`` only those queues are started (Vendure's ``activeQueues``).
_cli_launch: ContextVar[frozenset[str] | bool | None] = ContextVar("cli_launch", default=False)


@contextmanager
def launched_by_cli(active_queues: Iterable[str] | None = None) -> Iterator[None]:
    """Within this block no embedded worker starts, and ``start`` skips inactive queues."""
    token = _cli_launch.set(None if active_queues is None else frozenset(active_queues))
    try:
        yield
    finally:
        _cli_launch.reset(token)


def _inside_celery_cli() -> bool:
    """True while the ``celery`` command imports the app module (``celery -A module ...``).

    A ``celery worker`` binds its consumer later, so an embedded worker asked for must not
    start there; other ``celery`` commands (inspect, purge, shell) never run jobs.
    """
    context: Any = click.get_current_context(silent=True)
    while context is not None:
        if getattr(context.command, "name", None) == "celery":
            return True
        context = context.parent
    return False
