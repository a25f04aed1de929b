"""The adapter's transports belong to the apps it is given, never to the rest of the program."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from celery import Celery
from kombu.connection import Connection
from kombu.transport import TRANSPORT_ALIASES, filesystem, redis

from adapter import CeleryJobQueueStrategy
from adapter.celery import filesystem as adapter_filesystem
from adapter.celery import redis_transport as adapter_redis
from adapter.celery.app import create_app, use_adapter_transports
from adapter.celery.purge import AmqpTransport
from adapter.settings import filesystem_transport_options
from adapter.store.memory import MemoryJobStore

ROOT = Path(__file__).resolve().parents[2]
REDIS_URL = "redis://127.0.0.1:6379/0"


def _plain(url: str) -> Any:
    """A kombu connection made outside any app."""
    return Connection(url)  # type: ignore[no-untyped-call]


def _app(broker_url: str, tmp_path: Path) -> Celery:
    app = Celery("transports")
    app.conf.broker_url = broker_url
    app.conf.broker_transport_options = filesystem_transport_options(str(tmp_path))
    return app


@pytest.mark.parametrize(
    ("broker_url", "adapter_transport"),
    [
        (REDIS_URL, adapter_redis.Transport),
        ("rediss://127.0.0.1:6380/0", adapter_redis.Transport),
        ("filesystem://", adapter_filesystem.Transport),
    ],
)
def test_a_strategy_app_reads_and_writes_through_the_adapter_transport(
    broker_url: str, adapter_transport: type, tmp_path: Path
) -> None:
    app = _app(broker_url, tmp_path)
    strategy = CeleryJobQueueStrategy(app, store=MemoryJobStore())
    try:
        for connection in (app.connection_for_write(), app.connection_for_read()):
            assert connection.get_transport_cls() is adapter_transport
            assert connection.clone().get_transport_cls() is adapter_transport
            assert connection.as_uri().startswith(broker_url.split("//")[0])
        with app.pool.acquire(block=True) as pooled, app.producer_or_acquire() as producer:
            assert pooled.get_transport_cls() is adapter_transport
            assert producer.connection.get_transport_cls() is adapter_transport
    finally:
        strategy.destroy()


def test_an_app_made_by_create_app_uses_the_adapter_transport() -> None:
    app = create_app("transports", broker_url=REDIS_URL)
    assert app.connection_for_write().get_transport_cls() is adapter_redis.Transport


def test_another_app_and_a_plain_kombu_connection_keep_kombus_transports(
    tmp_path: Path,
) -> None:
    adapter_app = _app(REDIS_URL, tmp_path)
    use_adapter_transports(adapter_app)
    with adapter_app.pool.acquire(block=True):
        pass
    other = _app(REDIS_URL, tmp_path)
    assert other.connection_for_write().get_transport_cls() is redis.Transport
    with other.pool.acquire(block=True) as pooled:
        assert pooled.get_transport_cls() is redis.Transport
    assert _plain(REDIS_URL).get_transport_cls() is redis.Transport
    assert _plain("filesystem://").get_transport_cls() is filesystem.Transport
    assert TRANSPORT_ALIASES["redis"] == "kombu.transport.redis:Transport"
    assert TRANSPORT_ALIASES["filesystem"] == "kombu.transport.filesystem:Transport"


def test_an_amqp_app_gets_kombus_amqp_transport_whose_purges_cancel_jobs(tmp_path: Path) -> None:
    app = _app("amqp://guest:guest@127.0.0.1:5672//", tmp_path)
    use_adapter_transports(app)
    default = _plain("amqp://guest:guest@127.0.0.1:5672//").get_transport_cls()
    used = app.connection_for_write().get_transport_cls()
    assert used is AmqpTransport and issubclass(used, default)
    assert default is not AmqpTransport


def test_an_apps_own_connection_class_is_kept(tmp_path: Path) -> None:
    class Custom(Connection):
        pass

    app = _app(REDIS_URL, tmp_path)
    app.amqp.Connection = Custom
    use_adapter_transports(app)
    connection: Any = app.connection_for_write()
    assert connection.get_transport_cls() is adapter_redis.Transport
    assert isinstance(connection, Custom)


@pytest.mark.parametrize("module", ["celery", "kombu"])
def test_importing_adapter_imports_neither_celery_nor_kombu(module: str) -> None:
    found = subprocess.run(
        [sys.executable, "-c", f"import adapter, sys; print({module!r} in sys.modules)"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    assert found.stdout.strip() == "False"
