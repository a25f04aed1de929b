"""Run a Celery worker for the queues a module starts, with Vendure's graceful shutdown.

``run_worker`` is what ``jobqueue worker MODULE`` runs: Celery's own CLI worker (banner,
logging, pools, remote control) in this process, consuming the queues the module started.
On SIGTERM it stops taking jobs, waits up to ``graceful_timeout`` seconds for running jobs to
finish, then defers the jobs still running (PENDING, attempts reset, as Vendure's ``defer``)
and shuts down cold: their messages were never acknowledged, so the broker hands them to
another worker. Nothing is lost. A process function is not interrupted in the threads pool
(threads cannot be killed); the job is deferred all the same.

Optionally it answers ``GET /health`` on a port with ``{"status": "ok", ...}``.
"""

from __future__ import annotations

import json
import logging
import signal
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from celery.worker import state as worker_state

from adapter.celery.strategy import CeleryJobQueueStrategy

logger = logging.getLogger(__name__)

#: Default wait for running jobs after SIGTERM, in seconds (Vendure: 20 000 ms).
DEFAULT_GRACEFUL_TIMEOUT_S = 20.0


def run_worker(
    strategy: CeleryJobQueueStrategy,
    *,
    pool: str = "prefork",
    concurrency: int | None = None,
    loglevel: str = "INFO",
    hostname: str | None = None,
    graceful_timeout: float = DEFAULT_GRACEFUL_TIMEOUT_S,
    health_port: int | None = None,
) -> int:
    """Run the worker until it is shut down; return its exit code."""
    app = strategy.app
    stopper = GracefulStop(strategy, graceful_timeout)

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
    server = _serve_health(strategy, health_port) if health_port is not None else None
    try:
        worker.start()
    finally:
        if server is not None:
            server.shutdown()
    return int(worker.exitcode or 0)


class GracefulStop:
    """SIGTERM: stop consuming, wait for running jobs, defer what is left, shut down."""

    def __init__(self, strategy: CeleryJobQueueStrategy, timeout: float) -> None:
        self._strategy = strategy
        self._timeout = timeout
        self._started = False

    def on_sigterm(self, signum: int, frame: Any) -> None:
        """Begin the graceful stop in a thread (a signal handler must return quickly)."""
        if not self._started:
            self._started = True
            threading.Thread(target=self._stop, name="adapter-graceful-stop", daemon=True).start()

    def _stop(self) -> None:
        logger.warning("SIGTERM: no new jobs; waiting up to %ss for running ones", self._timeout)
        self._strategy.stop_consuming()
        deadline = time.monotonic() + self._timeout
        while worker_state.active_requests and time.monotonic() < deadline:
            time.sleep(0.1)
        running = [request.id for request in list(worker_state.active_requests)]
        if not running:
            worker_state.should_stop = 0
            return
        deferred = self._strategy.lifecycle.defer(running)
        logger.warning(
            "deferred %d running job(s) to PENDING for another worker: %s", len(deferred), running
        )
        worker_state.should_terminate = 0


def _serve_health(strategy: CeleryJobQueueStrategy, port: int) -> ThreadingHTTPServer:
    class Health(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path.rstrip("/") != "/health":
                self.send_error(404)
                return
            body = json.dumps({"status": "ok", "queues": strategy.running_queues()}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            logger.debug(format, *args)

    server = ThreadingHTTPServer(("127.0.0.1", port), Health)
    threading.Thread(target=server.serve_forever, name="adapter-health", daemon=True).start()
    return server
