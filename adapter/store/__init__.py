"""Job stores, chosen by URL: ``sqlite:///path`` (the embedded default) or any SQLAlchemy URL."""

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
        from adapter.store.sql import SqlJobStore

        return SqlJobStore(url)
    raise ConfigurationError(
        f"unsupported job store URL scheme {scheme!r}: use sqlite:///path or postgresql://..."
    )
