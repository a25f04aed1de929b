"""Build a Celery app configured for the adapter, and give an app the adapter's transports.

The adapter replaces three of kombu's transports with subclasses: ``filesystem://``
(``adapter.celery.filesystem``: first-in-first-out across processes), ``redis://`` /
``rediss://`` (``adapter.celery.redis_transport``: survives a Redis that goes away) and
``amqp://`` / ``amqps://``. With each, a purge of a job queue cancels its waiting jobs
(``adapter.celery.purge``; ``listen_for_purges``). They are
used by one app only: ``use_adapter_transports(app)`` (called by ``create_app`` and when a
``CeleryJobQueueStrategy`` is bound to the app) makes that app's connection class, Celery's
``app.amqp.Connection``, choose them by URL scheme. Every connection Celery opens for the app
goes through that class (the producer pool, a worker's consumer, events and remote control,
the embedded worker), in a ``celery worker`` too, since its app module binds the strategy.
kombu's global transport table is left alone: another app, or a ``kombu.Connection`` of the
same process, keeps kombu's transports.

Choosing by scheme at connection time, rather than setting Celery's ``broker_transport``, keeps
what a URL means intact: ``as_uri()`` still shows ``redis://``, ``rediss://`` keeps kombu's SSL
default, failover URLs and a broker URL changed later are resolved the same way. The class also
makes its pool's connections (kombu's pool makes plain ones) and keeps its pool apart from
those of plain connections to the same broker (kombu keys its process-wide pools by connection).
"""

from __future__ import annotations

import importlib.util
from typing import Any

from celery import Celery
from kombu.connection import Connection, ConnectionPool, PooledConnection
from kombu.transport.base import Transport
from kombu.utils.collections import HashedSeq
from kombu.utils.url import maybe_sanitize_url

from adapter.celery import filesystem, redis_transport
from adapter.celery.purge import AmqpSSLTransport, AmqpTransport, PurgeListener
from adapter.errors import ConfigurationError
from adapter.masking import mask_url
from adapter.settings import (
    STORE_URL,
    environment_settings,
    filesystem_transport_options,
    sqlite_store_url,
)

#: The config module ``create_app`` reads when it is importable (Celery's convention).
DEFAULT_CONFIG_MODULE = "celeryconfig"

#: The adapter's transport for each kombu transport alias (the URL scheme) it stands in for.
ADAPTER_TRANSPORTS: dict[str, type[Transport]] = {
    "filesystem": filesystem.Transport,
    "redis": redis_transport.Transport,
    "rediss": redis_transport.Transport,
    "amqp": AmqpTransport,
    "pyamqp": AmqpTransport,
    "amqps": AmqpSSLTransport,
}


class AdapterConnection(Connection):
    """A kombu connection that uses the adapter's transport for the schemes it replaces."""

    #: Told the queue name of each job queue this connection purges (``listen_for_purges``).
    job_queue_purged: PurgeListener | None = None

    def get_transport_cls(self) -> type[Transport]:
        """Return the adapter's transport for this connection's scheme, else kombu's."""
        alias = self.transport_cls
        if isinstance(alias, str) and alias in ADAPTER_TRANSPORTS:
            return ADAPTER_TRANSPORTS[alias]
        found: type[Transport] = super().get_transport_cls()  # type: ignore[no-untyped-call]
        return found

    def Pool(self, limit: int | None = None, **kwargs: Any) -> ConnectionPool:
        """Return a pool of connections like this one (kombu's pool makes plain ones)."""
        return AdapterConnectionPool(self, limit, **kwargs)  # type: ignore[no-untyped-call]

    def __eqhash__(self) -> object:
        # kombu keeps one pool per distinct connection in the process (``kombu.pools``); a
        # plain connection to the same broker must not share this one's, nor this one its.
        return HashedSeq(AdapterConnection, super().__eqhash__())  # type: ignore[no-untyped-call]


class AdapterConnectionPool(ConnectionPool):
    """kombu's connection pool, whose connections are of its connection's class."""

    def new(self) -> AdapterConnection:
        """Return a new connection for the pool, as kombu's pool does but of our class."""
        info = dict(self.connection._info(resolve=False))
        pooled: type[AdapterConnection] = _pooled_form(type(self.connection))
        return pooled(self, **info)


def _pooled_form(cls: type[AdapterConnection]) -> type[AdapterConnection]:
    """Return ``cls`` as a kombu pool's connection (made once per class, kept on it)."""
    made: type[AdapterConnection] | None = vars(cls).get("_pooled_form")
    if made is None:
        made = type(f"Pooled{cls.__name__}", (cls, PooledConnection), {})
        cls._pooled_form = made  # type: ignore[attr-defined]
    return made


def use_adapter_transports(app: Celery) -> None:
    """Make ``app``'s broker connections use the adapter's transports (only this app's)."""
    current: type[Connection] = app.amqp.Connection
    if issubclass(current, AdapterConnection):
        return
    if current is Connection:
        app.amqp.Connection = AdapterConnection
    else:  # an app's own connection class keeps its behaviour, with the adapter's transports
        app.amqp.Connection = type(f"Adapter{current.__name__}", (AdapterConnection, current), {})


def listen_for_purges(app: Celery, listener: PurgeListener) -> None:
    """Tell ``listener`` the queue name of each job queue a connection of ``app`` purges."""
    use_adapter_transports(app)
    current: type[AdapterConnection] = app.amqp.Connection
    app.amqp.Connection = type(
        current.__name__, (current,), {"job_queue_purged": staticmethod(listener)}
    )


def create_app(name: str = "adapter", config: str | None = None, **settings: Any) -> Celery:
    """Return a Celery app: settings from the environment, then a config module, then ``settings``.

    The adapter's settings (broker, store, ...) come from the environment
    (``adapter.settings.environment_settings``), so an installed package works from any folder.
    A config module overrides them: ``config`` when named (it must import), else
    ``celeryconfig`` when one is importable, as Celery's own convention. Nothing here changes
    how the app's other tasks are acknowledged, serialized or keep their results.
    """
    app = Celery(name)
    app.add_defaults(environment_settings())
    module = config or (DEFAULT_CONFIG_MODULE if _importable(DEFAULT_CONFIG_MODULE) else None)
    if module:
        app.config_from_object(module)
    if settings:
        app.conf.update(settings)
    use_adapter_transports(app)
    return app


def check_urls(app: Celery) -> None:
    """Refuse, masked, a broker or result backend URL of ``app`` that kombu cannot read.

    Celery would fail on it later (a worker's banner reads both) with an error whose text, and
    so whose traceback, holds part of the password.
    """
    try:
        with app.connection_for_write():  # reads the URL; connects only on first use
            pass
    except ValueError:
        raise ConfigurationError(
            f"malformed broker URL {shown_broker_url(app)} (percent-encode special characters)"
        ) from None
    backend = app.conf.result_backend
    try:
        if isinstance(backend, str):
            maybe_sanitize_url(backend)  # what the banner shows
    except ValueError:
        raise ConfigurationError(
            f"malformed result backend URL {mask_url(backend)} (percent-encode special characters)"
        ) from None


def shown_broker_url(app: Celery) -> str:
    """Return ``app``'s broker URL for messages, its password masked (``adapter.masking``)."""
    configured = app.conf.broker_url
    if isinstance(configured, list | tuple):  # failover URLs
        return ", ".join(mask_url(str(url)) for url in configured)
    return mask_url(str(configured)) if configured else app.connection_for_write().as_uri()


def _importable(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def embedded_settings(data_dir: str) -> dict[str, Any]:
    """Return settings for the embedded default: a ``filesystem://`` broker and SQLite store."""
    return {
        "broker_url": "filesystem://",
        "broker_transport_options": filesystem_transport_options(data_dir),
        STORE_URL.key: sqlite_store_url(data_dir),
    }
