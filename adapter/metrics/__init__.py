"""Prometheus metrics of the job queue: counted where jobs change, summed in the job store.

``render(strategy_or_store)`` returns ``(body, content_type)`` of Prometheus's text format, for
any web framework to serve at ``/metrics`` (a worker's health port serves it too). The metrics
are listed in ``adapter.metrics.catalog``; the counting is ``adapter.metrics.recorder``.
Rendering needs the ``metrics`` extra (``prometheus_client``); counting needs nothing.
"""

from __future__ import annotations

from typing import Any

from adapter.errors import ConfigurationError
from adapter.metrics.storage import metrics_storage
from adapter.store.base import JobStore

__all__ = ["render"]


def render(source: Any) -> tuple[bytes, str]:
    """Return the metrics of a strategy's job store (or of a ``JobStore``) and their type.

    ConfigurationError when ``prometheus_client`` is not installed (``pip install
    adapter[metrics]``); StoreError when the store cannot be read.
    """
    store = source if isinstance(source, JobStore) else source.store
    try:
        from adapter.metrics.exposition import render_store
    except ImportError as err:
        raise ConfigurationError(
            f"metrics need prometheus_client: pip install 'adapter[metrics]' ({err})"
        ) from err
    return render_store(store, metrics_storage(store))
