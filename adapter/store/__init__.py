"""Job stores, chosen by URL: ``sqlite:///path`` (the embedded default), ``postgresql://...``
(any SQLAlchemy URL of those two), ``redis://host:port/db`` (also ``rediss://``) or
``memory://name`` (this process only: for tests and single-process use)."""

from __future__ import annotations

from adapter.errors import ConfigurationError
from adapter.store.base import JobStore

__all__ = ["JobStore", "open_store"]


def open_store(url: str) -> JobStore:
    """Open the job store that ``url`` names."""
    if not url:
        raise ConfigurationError("the job store URL is empty; set ADAPTER_STORE_URL")
    scheme = url.split(":", 1)[0].split("+", 1)[0]
    if scheme in {"sqlite", "postgresql", "postgres"}:
        from adapter.store.sql.store import SqlJobStore

        return SqlJobStore(url)
    if scheme in {"redis", "rediss"}:
        from adapter.store.redis.store import RedisJobStore

        return RedisJobStore(url)
    if scheme == "memory":
        from adapter.store.memory import open_memory_store

        return open_memory_store(url)
    raise ConfigurationError(
        f"unsupported job store URL scheme {scheme!r}: use sqlite:///path, postgresql://..., "
        "redis://... or memory://name"
    )
