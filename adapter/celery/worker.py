"""Run a Celery worker for the queues a module starts, with Vendure's graceful shutdown.

``run_worker`` is what ``jobqueue worker MODULE`` runs: Celery's own CLI worker (banner,
logging, pools, remote control) in this process, consuming the queues the module started.
On SIGTERM it stops taking jobs and waits up to ``graceful_timeout`` seconds for the running
ones to finish. What happens to a job still running then depends on whether the pool can stop
it:

- **prefork** (a job runs in a child process): the job is deferred (PENDING, attempts reset,
  as Vendure's ``defer``), then its child is killed, then the worker shuts down cold. The
  message was never acknowledged, so the broker hands it to another worker.
- **threads, solo** (a job runs in a thread of this process; a Python thread cannot be
  killed): the worker keeps the job, never defers it, and waits ``KEEP_WAITING_S`` more. A job
  that finishes is recorded and acknowledged as usual. A job that does not is left behind:
  the process exits (``os._exit``; exit code 1) with its message unacknowledged, and the job
  runs again, as a job of a lost worker, once its heartbeat is older than the heartbeat
  timeout. Either way the process is gone ``graceful_timeout + KEEP_WAITING_S +
  EXIT_ALLOWANCE_S`` seconds after SIGTERM at the latest. Without ``os._exit`` it would
  not be: the interpreter's exit joins the thread pool's threads (``concurrent.futures``), so
  it waits for the job however long it runs, and a solo worker's loop does not even look at
  its stop flag while the job runs in its main thread.

Why the same attempt never runs twice at once:

- A job is claimed (``START``) only when it is PENDING or RETRYING, or RUNNING with a
  heartbeat older than the heartbeat timeout; the store checks this atomically.
- While a process runs a job, its ``adapter.running`` thread stamps the heartbeat every
  heartbeat interval, up to the moment the process exits (the timeout is at least two
  intervals). A copy of the message delivered meanwhile is refused at claim and dropped.
- A deferred job is PENDING, so it can be claimed at once: it is deferred only on prefork,
  and its child is killed right after, before its message can reach another worker (the
  message goes back to the broker only once the pool has seen its child lost, or when the
  cold shutdown that follows closes the connection).
- So a second run starts only after the first process stopped running the job: killed
  (prefork), finished, or exited. The one exception is the lost-worker case in general: a
  process alive but unable to reach the store for a whole heartbeat timeout.

With ``health_port`` it answers ``GET /health`` (``adapter.celery.health``, through the
app's ``adapter_health_port`` and ``adapter_health_host`` settings, as any worker does).
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import sys
import threading
import time
from typing import Any

from celery.concurrency import get_implementation
from celery.concurrency.prefork import TaskPool as PreforkPool
from celery.worker import state as worker_state

from adapter.celery.embedded import EXIT_ABANDONED
from adapter.celery.strategy import CeleryJobQueueStrategy
from adapter.settings import HEALTH_HOST, HEALTH_PORT

logger = logging.getLogger(__name__)

#: Default wait for running jobs after SIGTERM, in seconds (Vendure: 20 000 ms).
DEFAULT_GRACEFUL_TIMEOUT_S = 20.0
#: How much longer than the graceful timeout a pool that cannot stop a running job (threads,
#: solo) waits for it before the process exits without it, in seconds.
KEEP_WAITING_S = 10.0
#: Time given to Celery's warm shutdown after the last job finished; then the process exits
#: whatever it is doing, in seconds (threads and solo only).
EXIT_ALLOWANCE_S = 5.0
#: How often the running jobs are looked at while waiting for them, in seconds.
POLL_INTERVAL_S = 0.1


def run_worker(
    strategy: CeleryJobQueueStrategy,
    *,
    pool: str = "prefork",
    concurrency: int | None = None,
    loglevel: str = "INFO",
    hostname: str | None = None,
    graceful_timeout: float = DEFAULT_GRACEFUL_TIMEOUT_S,
    health_port: int | None = None,
    health_host: str | None = None,
) -> int:
    """Run the worker until it is shut down; return its exit code."""
    app = strategy.app
    if health_port is not None:
        app.conf[HEALTH_PORT.key] = health_port
    if health_host is not None:
        app.conf[HEALTH_HOST.key] = health_host
    stopper = GracefulStop(strategy, graceful_timeout, pool=pool)

    class Worker(app.Worker):  # type: ignore[misc, name-defined]
        def install_platform_tweaks(self, worker: Any) -> None:
            super().install_platform_tweaks(worker)
            signal.signal(signal.SIGTERM, stopper.on_sigterm)

    options: dict[str, Any] = {"pool_cls": pool, "loglevel": loglevel}
    if concurrency:
        options["concurrency"] = concurrency
    if hostname:
        options["hostname"] = hostname
    worker = Worker(**options)
    worker.start()
    return int(worker.exitcode or 0)


class GracefulStop:
    """SIGTERM: stop consuming, wait for running jobs, then defer or keep what is left."""

    def __init__(
        self,
        strategy: CeleryJobQueueStrategy,
        timeout: float,
        *,
        pool: str = "prefork",
        keep_waiting: float = KEEP_WAITING_S,
        exit_allowance: float = EXIT_ALLOWANCE_S,
    ) -> None:
        self._strategy = strategy
        self._timeout = timeout
        self._pool_name = pool
        self._pool_stops_jobs = issubclass(get_implementation(pool), PreforkPool)
        self._keep_waiting = keep_waiting
        self._exit_allowance = exit_allowance
        self._started = False

    def on_sigterm(self, signum: int, frame: Any) -> None:
        """Begin the graceful stop in a thread (a signal handler must return quickly)."""
        if not self._started:
            self._started = True
            threading.Thread(target=self._stop, name="adapter-graceful-stop", daemon=True).start()

    def _stop(self) -> None:
        sigterm_at = time.monotonic()
        logger.warning("SIGTERM: no new jobs; waiting up to %ss for running ones", self._timeout)
        # In a thread: the consumer applies the change in its own loop, which a solo worker
        # only reaches once its job returns; the deadlines count from SIGTERM all the same.
        threading.Thread(
            target=self._strategy.stop_consuming, name="adapter-stop-consuming", daemon=True
        ).start()
        running = _wait_for_running(sigterm_at + self._timeout)
        if not running:
            worker_state.should_stop = 0
        elif self._pool_stops_jobs:
            self._defer_and_kill(running)
            return
        else:
            self._keep(running, sigterm_at + self._timeout + self._keep_waiting)
        if not self._pool_stops_jobs:  # a job that slipped in, or a stuck warm shutdown
            bound = self._timeout + self._keep_waiting + self._exit_allowance
            time.sleep(max(sigterm_at + bound - time.monotonic(), 0))
            logger.error("shutdown still not done %gs after SIGTERM; exiting now", bound)
            _exit(EXIT_ABANDONED)

    def _defer_and_kill(self, running: list[Any]) -> None:
        """Prefork: PENDING for another worker, then its child killed, then a cold stop.

        Killed, not terminated through Celery (``Request.terminate`` acknowledges the
        message): the pool sees a lost child and hands the message back, or the cold
        shutdown does; both after the child is gone.
        """
        ids = [request.id for request in running]
        deferred = self._strategy.lifecycle.defer(ids)
        for request in running:
            if request.worker_pid and request.worker_pid != os.getpid():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(request.worker_pid, signal.SIGKILL)
        logger.warning(
            "deferred %d running job(s) to PENDING for another worker, and killed the pool "
            "processes running them: %s",
            len(deferred),
            ids,
        )
        worker_state.should_terminate = 0

    def _keep(self, running: list[Any], deadline: float) -> None:
        """Threads, solo: the jobs cannot be stopped; wait for them, or exit without them."""
        logger.warning(
            "cannot stop a running job on the %s pool: waiting up to %ss more for %d job(s), "
            "not deferring them: %s",
            self._pool_name,
            self._keep_waiting,
            len(running),
            [request.id for request in running],
        )
        left = _wait_for_running(deadline)
        if left:
            logger.error(
                "exiting with %d job(s) still running: %s; their messages are not acknowledged "
                "and they run again once their heartbeat is %gs old",
                len(left),
                [request.id for request in left],
                self._strategy.lifecycle.liveness.heartbeat_timeout,
            )
            _exit(EXIT_ABANDONED)
        logger.warning("the running job(s) finished; shutting down")
        worker_state.should_stop = 0


def _wait_for_running(deadline: float) -> list[Any]:
    """Wait until no job runs or ``deadline`` (monotonic) passes; return the requests left."""
    while worker_state.active_requests and time.monotonic() < deadline:
        time.sleep(POLL_INTERVAL_S)
    return list(worker_state.active_requests)


def _exit(code: int) -> None:
    """End the process now, from any thread: a thread running a job cannot be joined."""
    for handler in logging.getLogger().handlers:
        handler.flush()
    for stream in (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__):
        if stream is not None:
            with contextlib.suppress(OSError, ValueError):  # closed or detached
                stream.flush()
    os._exit(code)
