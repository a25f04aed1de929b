"""A Celery worker running inside the current process, for scripts and development servers.

``start`` uses it when the process is not a Celery worker: a ``WorkController`` with the
threads pool runs in a daemon thread and consumes only the started queues. It stops warmly
(running jobs finish, unstarted messages go back to the broker) on ``destroy`` and at exit.

At interpreter exit the stop runs before Python joins the pool's threads (a thread-shutdown
hook, which runs ahead of ``concurrent.futures``' own): a job still running ``STOP_TIMEOUT_S``
later is abandoned, and the process exits with code 1 after the ``atexit`` handlers (pending
adds are written); the job's message is not acknowledged, its heartbeat stops, and it runs
again as a job of a lost worker. ``destroy`` leaves the store open while a job still runs in
its thread, so its heartbeat and outcome are still written.
A thread cannot be killed, so a running job is never deferred here: ``stop`` waits up to
``STOP_TIMEOUT_S`` for it and then returns, leaving it to finish in its thread (its heartbeat
goes on while this process lives; once the process is gone the job runs again elsewhere, as a
job of a lost worker).

Celery's threads and solo pools look tasks up through ``current_app``, so the embedded worker
makes the strategy's app the current and default app of this process.
"""

from __future__ import annotations

import atexit
import concurrent.futures.thread  # noqa: F401 - its exit hook must be registered before ours
import logging
import os
import socket
import threading
from typing import Any

from celery import Celery
from celery.worker import state as worker_state

from adapter.celery.consumer import ConsumerHandle
from adapter.celery.routing import celery_queue
from adapter.errors import ConfigurationError

# The embedded broker's folders follow the data-dir setting; imported from here as well.
from adapter.settings import filesystem_transport_options as filesystem_transport_options

logger = logging.getLogger(__name__)

#: How long ``start`` waits for the embedded worker to connect to the broker, in seconds.
READY_TIMEOUT_S = 30.0
#: How long a stop waits for running jobs to finish, in seconds.
STOP_TIMEOUT_S = 30.0
#: Exit status of a worker or a process that ended with jobs still running (not acknowledged).
EXIT_ABANDONED = 1


class EmbeddedWorker:
    """A threads-pool Celery worker in a background thread of this process."""

    def __init__(self, app: Celery, handle: ConsumerHandle, concurrency: int) -> None:
        self._app = app
        self._handle = handle
        self._concurrency = concurrency
        self._worker: Any = None
        self._thread: threading.Thread | None = None
        self._failure: BaseException | None = None
        self._exit_hooked = False

    @property
    def running(self) -> bool:
        """True while the worker thread is alive."""
        return self._thread is not None and self._thread.is_alive()

    def start(self, queue_names: list[str]) -> None:
        """Start consuming ``queue_names`` and return once the worker is consuming."""
        if self.running:
            return
        self._app.set_current()
        self._app.set_default()
        self._worker = self._app.WorkController(
            hostname=f"adapter-embedded-{os.getpid()}@{socket.gethostname()}",
            pool_cls="threads",
            concurrency=self._concurrency,
            queues=[celery_queue(name) for name in queue_names],
            without_heartbeat=True,
            without_mingle=True,
            without_gossip=True,
        )
        self._thread = threading.Thread(
            target=self._run, name="adapter-embedded-worker", daemon=True
        )
        self._thread.start()
        atexit.register(self.stop)
        if not self._exit_hooked:
            # Python joins every pool thread before atexit handlers run: stop before that.
            threading._register_atexit(self._stop_at_exit)  # type: ignore[attr-defined]
            self._exit_hooked = True
        if not self._handle.ready.wait(READY_TIMEOUT_S):
            self.stop()
            reason = f": {self._failure}" if self._failure else ""
            raise ConfigurationError(
                f"the embedded worker did not connect to broker "
                f"{self._app.connection_for_write().as_uri()} within {READY_TIMEOUT_S:.0f}s{reason}"
            )

    def _run(self) -> None:
        try:
            self._worker.start()
        except BaseException as err:  # reported by start(); the thread must not die silently
            self._failure = err
            logger.exception("embedded worker stopped with an error")

    def stop(self) -> bool:
        """Stop warmly: running jobs finish, unstarted ones stay in the broker.

        Returns False when a job still ran after ``STOP_TIMEOUT_S`` (left in its thread).
        """
        worker, thread = self._worker, self._thread
        if worker is None or thread is None:
            return True
        self._worker = self._thread = None
        atexit.unregister(self.stop)
        # The worker's own thread must shut it down: the broker connection is not thread-safe
        # (py-amqp deadlocks when another thread cancels consumers while it reads). Celery's
        # flag is process-wide; one embedded worker runs per process, so it is ours.
        if worker_state.active_requests:
            logger.warning(
                "cannot stop a running job on the embedded worker's threads pool: waiting up "
                "to %ss for %d job(s), not deferring them",
                STOP_TIMEOUT_S,
                len(worker_state.active_requests),
            )
        worker_state.should_stop = 0
        try:
            thread.join(STOP_TIMEOUT_S)
        finally:
            worker_state.should_stop = None
        if thread.is_alive():
            logger.warning(
                "embedded worker still busy after %ss; leaving its job(s) to finish in their "
                "thread",
                STOP_TIMEOUT_S,
            )
            return False
        return True

    def _stop_at_exit(self) -> None:
        """Interpreter exit: stop; exit at once if a job still runs instead of waiting for it."""
        if self.stop():
            return
        logger.warning(
            "exiting with %d job(s) still running on the embedded worker: not acknowledged, "
            "they run again as jobs of a lost worker",
            len(worker_state.active_requests),
        )
        atexit._run_exitfuncs()
        os._exit(EXIT_ABANDONED)


def prepare_filesystem_broker(app: Celery) -> None:
    """Create the folders of a ``filesystem://`` broker, which kombu expects to exist."""
    if not str(app.conf.broker_url or "").startswith("filesystem://"):
        return
    options = app.conf.broker_transport_options or {}
    for key in ("data_folder_in", "data_folder_out", "control_folder", "processed_folder"):
        folder = options.get(key)
        if folder:
            os.makedirs(folder, exist_ok=True)
