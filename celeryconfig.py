"""Celery settings for the adapter, read from the environment: an example to copy.

Use it with ``app.config_from_object("celeryconfig")``. It holds Celery's settings that jobs
rely on (``adapter.settings.recommended_celery_settings``: acks late, reject on worker lost,
prefetch 1, JSON only, persistent delivery, ...) and every adapter setting, each from its
environment variable (``ADAPTER_BROKER_URL``, ``ADAPTER_STORE_URL``, ``ADAPTER_DATA_DIR``, ...;
the table with types and defaults is ``adapter.settings.SETTINGS``, and the README's
Configuration section). Unset, the broker is the embedded ``filesystem://`` (no server) and
the store a SQLite file in the data dir.

Add your own Celery settings below the line that reads them; they win.
"""

from adapter.settings import celery_settings_from_environment

globals().update(celery_settings_from_environment())
