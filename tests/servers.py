"""Where the real test servers live and whether they answer: the one place fixtures ask.

Each URL is read from the environment and defaults to the server that ``scripts/test`` starts
on 127.0.0.1. A server that does not answer skips the test locally and fails it when ``CI`` is
set, so a CI run can never pass by silently skipping its integration tests.

REDIS_URL      ``redis://127.0.0.1:6379/11``; database 11 is the tests' own, and tests never
               flush it or any other (the server is shared). Under pytest-xdist, worker ``gwN``
               uses the database N below it (gw0 11, gw1 10, ... gw5 6): kombu keeps one
               ``unacked`` hash and one restore lock per database, and a worker of one test
               must not restore, or lock out, the messages of a test running beside it.
AMQP_URL       ``amqp://guest:guest@127.0.0.1:5672//`` (RabbitMQ).
POSTGRES_URL   ``postgresql+psycopg://postgres@127.0.0.1:5432/test`` (an SQLAlchemy URL).
"""

import functools
import os
import socket
from typing import Final
from urllib.parse import urlsplit, urlunsplit

import pytest
import redis


def _database_of_this_worker(url: str) -> str:
    """Return ``url`` with its database moved down by this xdist worker's number (gwN: N)."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    if not worker.startswith("gw"):
        return url
    parts = urlsplit(url)
    database = int(parts.path.strip("/") or 0) - int(worker.removeprefix("gw"))
    if database < 1:
        raise ValueError(f"{url}: too many xdist workers for one Redis database each below it")
    return urlunsplit(parts._replace(path=f"/{database}"))


REDIS_URL: Final = _database_of_this_worker(
    os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/11")
)
AMQP_URL: Final = os.environ.get("AMQP_URL", "amqp://guest:guest@127.0.0.1:5672//")
POSTGRES_URL: Final = os.environ.get(
    "POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)

#: Seconds to wait for a TCP connect or a Redis reply before calling a server absent.
CONNECT_TIMEOUT: Final = 2.0

#: Server name given to ``require`` -> (environment variable, URL).
_SERVERS: Final = {
    "redis": ("REDIS_URL", REDIS_URL),
    "amqp": ("AMQP_URL", AMQP_URL),
    "postgres": ("POSTGRES_URL", POSTGRES_URL),
}

#: URL scheme (before any ``+driver``) -> port used when the URL names none.
_DEFAULT_PORTS: Final = {
    "redis": 6379,
    "rediss": 6379,
    "amqp": 5672,
    "amqps": 5671,
    "postgresql": 5432,
    "postgres": 5432,
}

_TRUTHY: Final = frozenset({"1", "true", "yes", "on"})


def in_ci() -> bool:
    """Tell whether this run is CI's, where a missing server is a failure, not a skip."""
    return os.environ.get("CI", "").strip().lower() in _TRUTHY


def require(name: str) -> str:
    """Return the URL of the named server, or skip (locally) or fail (in CI) when it is down.

    Args:
        name: ``"redis"``, ``"amqp"`` or ``"postgres"``.

    Raises:
        ValueError: When the name is none of those.
    """
    if name not in _SERVERS:
        raise ValueError(f"unknown server {name!r}; expected one of {sorted(_SERVERS)}")
    env_var, url = _SERVERS[name]
    problem = _probe(name, url)
    if problem is None:
        return url
    reason = f"{name} server not answering ({problem}); run scripts/test, or set {env_var}"
    if in_ci():
        pytest.fail(f"{reason} [CI is set, so this is a failure]", pytrace=False)
    pytest.skip(reason)


@functools.cache
def _probe(name: str, url: str) -> str | None:
    """Return why the server at the URL does not answer, or None when it does."""
    parts = urlsplit(url)
    host = parts.hostname or "127.0.0.1"
    scheme = parts.scheme.split("+", 1)[0]
    try:
        port = parts.port or _DEFAULT_PORTS.get(scheme)
    except ValueError as err:
        return f"bad port in URL: {err}"
    if port is None:
        return f"no port in URL and none known for scheme {parts.scheme!r}"
    try:
        with socket.create_connection((host, port), timeout=CONNECT_TIMEOUT):
            pass
    except OSError as err:
        return f"{host}:{port}: {err}"
    if name == "redis":
        return _redis_ping_problem(url, host, port)
    return None


def _redis_ping_problem(url: str, host: str, port: int) -> str | None:
    """Return why Redis at the URL does not answer PING, or None when it does."""
    client = redis.Redis.from_url(
        url, socket_connect_timeout=CONNECT_TIMEOUT, socket_timeout=CONNECT_TIMEOUT
    )
    try:
        client.ping()
    except redis.RedisError as err:
        return f"{host}:{port}: PING failed: {err}"
    finally:
        client.close()
    return None
