"""Build a Celery app configured for the adapter, from ``celeryconfig`` or explicit settings."""

from __future__ import annotations

import os
from typing import Any

from celery import Celery

from adapter.celery.embedded import filesystem_transport_options

#: The module Celery reads settings from unless told otherwise.
DEFAULT_CONFIG_MODULE = "celeryconfig"


def create_app(
    name: str = "adapter", config: str = DEFAULT_CONFIG_MODULE, **settings: Any
) -> Celery:
    """Return a Celery app configured from the module ``config``, then ``settings``."""
    app = Celery(name)
    app.config_from_object(config)
    if settings:
        app.conf.update(settings)
    return app


def embedded_settings(data_dir: str) -> dict[str, Any]:
    """Return settings for the embedded default: a ``filesystem://`` broker and SQLite store."""
    return {
        "broker_url": "filesystem://",
        "broker_transport_options": filesystem_transport_options(data_dir),
        "adapter_store_url": f"sqlite:///{os.path.join(data_dir, 'jobs.sqlite3')}",
    }
