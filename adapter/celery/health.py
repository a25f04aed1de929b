"""``GET /health`` of a worker: 200 while it can take jobs, 503 with the reason otherwise.

A worker bootstep (``health_step``, installed by the strategy on its app) serves it in every
worker of an app whose setting ``adapter_health_port`` is set (``ADAPTER_HEALTH_PORT``):
``celery -A module worker`` and ``jobqueue worker --health-port N`` (which sets it) alike, on
``adapter_health_host`` (default 127.0.0.1; 0.0.0.0 for Kubernetes probes).

- **200** ``{"status": "ok", "queues": [queue names], "celery_queues": [...]}`` when the
  worker's consumer runs and a new connection to the broker succeeds; ``queues`` are the job
  queues the consumer takes messages from now, ``celery_queues`` every celery queue it consumes.
- **503** ``{"status": "unavailable", "reason": "..."}`` otherwise: the consumer is not
  running (starting, or reconnecting after a lost broker), or a new connection to the broker
  fails within Celery's ``broker_connection_timeout`` (4 s by default; on Redis, whose
  transport ignores it, ``BROKER_TIMEOUT_S``). Requests share the checks: at most one per
  ``CHECK_EVERY_S``.
- **Bounded**: at most ``MAX_CONNECTIONS`` requests at once (more are closed unanswered), each
  given ``REQUEST_TIMEOUT_S`` to send its request and read the answer, so slow clients cannot
  hold the server or the worker.
- **Not in pool children**: the socket is opened after the prefork pool has forked its
  children (the step follows the Pool step), and closed in every process forked later (a
  child replacing a lost one), so only the worker's main process listens: a pool child that
  outlives it cannot hold the port.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
import weakref
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar, Protocol

from celery import Celery, bootsteps

from adapter.celery.routing import queue_name_of
from adapter.errors import ConfigurationError, JobQueueError
from adapter.metrics import render
from adapter.settings import HEALTH_PORT, AdapterSettings
from adapter.store.base import JobStore

logger = logging.getLogger(__name__)

#: Requests served at once; more are closed unanswered.
MAX_CONNECTIONS = 8
#: Time a client gets to send its request and read the answer, in seconds.
REQUEST_TIMEOUT_S = 5.0
#: Longest wait for Redis to accept a new connection and answer, in seconds.
BROKER_TIMEOUT_S = 4.0
#: A broker check answers the requests of this many seconds after it.
CHECK_EVERY_S = 1.0

#: The servers open in this process: a forked child closes their sockets (``_close_in_child``).
_open_servers: weakref.WeakSet[HealthServer] = weakref.WeakSet()
_fork_hook_installed = False


class RunningConsumer(Protocol):
    """What the check reads of ``ConsumerHandle``: the worker's consumer, if it runs."""

    @property
    def consumer(self) -> Any:
        """The running consumer, or None."""


class HealthCheck:
    """Says whether the worker can take jobs: its consumer runs and its broker answers."""

    def __init__(self, app: Celery, handle: RunningConsumer) -> None:
        self._app = app
        self._handle = handle
        self._lock = threading.Lock()
        self._checked_at = -CHECK_EVERY_S
        self._broker_problem: str | None = None

    def status(self) -> tuple[int, dict[str, Any]]:
        """Return the HTTP status and the JSON answer of ``GET /health`` now."""
        consumer = self._handle.consumer
        if consumer is None:
            return _unavailable("the worker's consumer is not running (starting, or reconnecting)")
        problem = self._check_broker()
        if problem is not None:
            return _unavailable(f"the broker does not answer: {problem}")
        celery_queues = sorted(_consumed(consumer))
        queues = [name for name in map(queue_name_of, celery_queues) if name is not None]
        return 200, {"status": "ok", "queues": queues, "celery_queues": celery_queues}

    def _check_broker(self) -> str | None:
        with self._lock:  # concurrent requests share one check
            if time.monotonic() - self._checked_at >= CHECK_EVERY_S:
                self._broker_problem = self._connect()
                self._checked_at = time.monotonic()
            return self._broker_problem

    def _connect(self) -> str | None:
        timeouts = {"socket_connect_timeout": BROKER_TIMEOUT_S, "socket_timeout": BROKER_TIMEOUT_S}
        try:
            with self._app.connection_for_read(transport_options=timeouts) as connection:
                connection.ensure_connection(max_retries=0)
        except Exception as err:  # each transport raises its own errors
            return f"{type(err).__name__}: {err}"
        return None


def _unavailable(reason: str) -> tuple[int, dict[str, Any]]:
    return 503, {"status": "unavailable", "reason": reason}


def _consumed(consumer: Any) -> list[str]:
    task_consumer = getattr(consumer, "task_consumer", None)
    queues = list(getattr(task_consumer, "queues", None) or ())  # a copy: another thread edits it
    return [queue.name for queue in queues]


class HealthServer(ThreadingHTTPServer):
    """An HTTP server answering ``GET /health`` from a ``HealthCheck``, with bounded requests."""

    daemon_threads = True

    def __init__(
        self, address: tuple[str, int], check: HealthCheck, store: JobStore | None = None
    ) -> None:
        """Listen on ``address`` (port 0: any free port); ``serve`` starts answering.

        With ``store``, ``GET /metrics`` answers its metrics (``adapter.metrics.render``).
        """
        self.check = check
        self.store = store
        self._slots = threading.BoundedSemaphore(MAX_CONNECTIONS)
        super().__init__(address, _HealthHandler)

    def serve(self) -> None:
        """Answer requests in a background thread until ``close``."""
        _install_fork_hook()
        _open_servers.add(self)
        threading.Thread(target=self.serve_forever, name="adapter-health", daemon=True).start()

    def close(self) -> None:
        """Stop answering and close the socket."""
        _open_servers.discard(self)
        self.shutdown()
        self.server_close()

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self._slots.acquire(blocking=False):
            self.shutdown_request(request)  # busy: closed unanswered
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._slots.release()
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()


class _HealthHandler(BaseHTTPRequestHandler):
    timeout = REQUEST_TIMEOUT_S  # applies to every read and write of the connection
    server: HealthServer

    def do_GET(self) -> None:
        path = self.path.rstrip("/")
        if path == "/metrics" and self.server.store is not None:
            self._metrics(self.server.store)
            return
        if path != "/health":
            self.send_error(404)
            return
        code, answer = self.server.check.status()
        self._reply(code, json.dumps(answer).encode(), "application/json")

    def _metrics(self, store: JobStore) -> None:
        try:
            body, content_type = render(store)
        except JobQueueError as err:  # no prometheus_client, or the store is unreachable
            self._reply(503, f"{err}\n".encode(), "text/plain; charset=utf-8")
            return
        self._reply(200, body, content_type)

    def _reply(self, code: int, body: bytes, content_type: str) -> None:
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        logger.debug(format, *args)


def _install_fork_hook() -> None:
    global _fork_hook_installed
    if not _fork_hook_installed:
        os.register_at_fork(after_in_child=_close_in_child)
        _fork_hook_installed = True


def _close_in_child() -> None:
    """In a forked child, close the listening sockets (the parent keeps its own)."""
    for server in list(_open_servers):
        server.socket.close()
    _open_servers.clear()


def health_step(
    handle: RunningConsumer, store: JobStore | None = None
) -> type[bootsteps.StartStopStep]:
    """Return a worker bootstep serving ``/health`` (and ``/metrics`` of ``store``) when the
    app's setting asks for it."""

    class AdapterHealth(bootsteps.StartStopStep):  # type: ignore[misc]
        """Serves GET /health on ``adapter_health_host:adapter_health_port``."""

        requires: ClassVar = {"celery.worker.components:Pool"}

        def __init__(self, worker: Any, **kwargs: Any) -> None:
            super().__init__(worker, **kwargs)
            self._server: HealthServer | None = None

        def start(self, worker: Any) -> None:
            settings = AdapterSettings.from_conf(worker.app.conf)
            if settings.health_port is None:
                return
            address = (settings.health_host, settings.health_port)
            try:
                self._server = HealthServer(address, HealthCheck(worker.app, handle), store)
            except OSError as err:
                raise ConfigurationError(
                    f"cannot serve /health on {address[0]}:{address[1]} "
                    f"({HEALTH_PORT.key}): {err.strerror or err}"
                ) from err
            self._server.serve()
            host, port = self._server.server_address[:2]
            logger.info("serving GET /health on http://%s:%s/health", host, port)

        def stop(self, worker: Any) -> None:
            if self._server is not None:
                self._server.close()
                self._server = None

        terminate = shutdown = stop

    return AdapterHealth
