"""The /health server on its own: what it answers, how it bounds clients, and that a forked
child does not keep its socket. Brokers here are kombu's in-memory one or a closed port.
"""

from __future__ import annotations

import json
import os
import socket
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import pytest
from celery import Celery

from adapter.celery.health import (
    MAX_CONNECTIONS,
    REQUEST_TIMEOUT_S,
    HealthCheck,
    HealthServer,
    health_step,
)
from adapter.errors import ConfigurationError
from adapter.store.memory import MemoryJobStore
from tests.factories import make_job
from tests.private_brokers import free_port
from tests.support import wait_for


@dataclass
class Consumed:
    """A celery queue as a consumer lists it."""

    name: str


@dataclass
class FakeTaskConsumer:
    queues: list[Consumed] = field(default_factory=list)


@dataclass
class FakeConsumer:
    task_consumer: FakeTaskConsumer = field(default_factory=FakeTaskConsumer)


@dataclass
class Handle:
    """The worker's consumer as the check sees it (``ConsumerHandle.consumer``)."""

    consumer: Any = None


def make_app(broker: str) -> Celery:
    """Return an app on ``broker``, apart from every other app."""
    return Celery("health", broker=broker, set_as_current=False)


@pytest.fixture
def served() -> Iterator[tuple[HealthServer, Handle]]:
    """A running server on a free port whose worker's consumer has not started yet."""
    handle = Handle()
    app = make_app("memory://")
    server = HealthServer(("127.0.0.1", 0), HealthCheck(app, handle))
    server.serve()
    yield server, handle
    server.close()
    app.close()


def get(server: HealthServer, path: str = "/health") -> tuple[int, dict[str, Any]]:
    """Return the status and JSON answer of GET ``path``."""
    port = server.server_address[1]
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as answer:
            return int(answer.status), json.loads(answer.read())
    except urllib.error.HTTPError as err:
        body = err.read()
        return int(err.code), json.loads(body) if body.startswith(b"{") else {}


def closed_unanswered(client: socket.socket) -> bool:
    """Tell whether the server closed ``client``'s connection without a byte of answer."""
    try:
        return client.recv(100) == b""
    except ConnectionResetError:  # closed with the request unread
        return True


def test_without_a_running_consumer_health_is_503_with_the_reason(
    served: tuple[HealthServer, Handle],
) -> None:
    code, answer = get(served[0])
    assert code == 503
    assert answer == {
        "status": "unavailable",
        "reason": "the worker's consumer is not running (starting, or reconnecting)",
    }


def test_with_a_running_consumer_and_broker_health_is_200_with_the_consumed_queues(
    served: tuple[HealthServer, Handle],
) -> None:
    server, handle = served
    queues = [Consumed("celery"), Consumed("jobs.mail"), Consumed("jobs.video.resize")]
    handle.consumer = FakeConsumer(FakeTaskConsumer(queues))
    assert get(server) == (
        200,
        {
            "status": "ok",
            "queues": ["mail", "video.resize"],
            "celery_queues": ["celery", "jobs.mail", "jobs.video.resize"],
        },
    )
    assert get(server, "/other")[0] == 404


def test_a_broker_that_does_not_answer_makes_health_503_naming_it() -> None:
    app = make_app(f"redis://127.0.0.1:{free_port()}/0")
    check = HealthCheck(app, Handle(FakeConsumer()))
    try:
        code, answer = check.status()
    finally:
        app.close()
    assert code == 503
    assert answer["reason"].startswith("the broker does not answer: ")


def test_idle_clients_take_at_most_the_slots_and_are_dropped_after_the_request_timeout(
    served: tuple[HealthServer, Handle],
) -> None:
    server, _ = served
    address = ("127.0.0.1", server.server_address[1])
    idle = [socket.create_connection(address) for _ in range(MAX_CONNECTIONS)]
    try:
        with socket.create_connection(address, timeout=REQUEST_TIMEOUT_S * 4) as extra:
            extra.sendall(b"GET /health HTTP/1.0\r\n\r\n")
            assert closed_unanswered(extra)  # no slot left
        for client in idle:  # each dropped once its time is up, without a request
            client.settimeout(REQUEST_TIMEOUT_S * 4)
            assert closed_unanswered(client)
        assert wait_for(lambda: get(server)[0] == 503, "an answer once the slots are free")
    finally:
        for client in idle:
            client.close()


def test_a_forked_child_does_not_keep_the_listening_socket(
    served: tuple[HealthServer, Handle],
) -> None:
    server, _ = served
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report whether its copy of the socket is closed, then leave
        os.write(write_end, b"closed" if server.socket.fileno() == -1 else b"open")
        os._exit(0)
    os.close(write_end)
    try:
        reported = os.read(read_end, 10)
    finally:
        os.close(read_end)
        os.waitpid(pid, 0)
    assert reported == b"closed"
    assert get(server)[0] == 503  # the parent still answers


def test_a_health_port_in_use_stops_the_worker_with_an_error_naming_it() -> None:
    app = make_app("memory://")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        app.conf.adapter_health_port = port
        worker = SimpleNamespace(app=app)
        step = health_step(Handle())(worker)
        try:
            refused = f"cannot serve /health on 127.0.0.1:{port}"
            with pytest.raises(ConfigurationError, match=refused):
                step.start(worker)
        finally:
            step.stop(worker)
            app.close()


def test_metrics_are_served_beside_health_when_the_server_has_a_store() -> None:
    store = MemoryJobStore()
    store.insert(make_job(queue_name="mail"))
    app = make_app("memory://")
    server = HealthServer(("127.0.0.1", 0), HealthCheck(app, Handle()), store)
    server.serve()
    try:
        port = server.server_address[1]
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as answer:
            content_type, body = answer.headers["Content-Type"], answer.read().decode()
        assert get(server)[0] == 503  # /health answers as before
    finally:
        server.close()
        app.close()
    assert content_type.startswith("text/plain; version=")
    assert 'adapter_jobs{queue="mail",state="PENDING"} 1.0' in body.splitlines()


def test_without_a_store_metrics_is_not_found(served: tuple[HealthServer, Handle]) -> None:
    assert get(served[0], "/metrics")[0] == 404
