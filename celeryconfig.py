"""Celery settings for the adapter, read from the environment: an example to copy.

Use it with ``app.config_from_object("celeryconfig")``; ``create_app`` reads it when it is
importable. It holds every adapter setting, each from its environment variable
(``ADAPTER_BROKER_URL``, ``ADAPTER_STORE_URL``, ``ADAPTER_DATA_DIR``, ...; the table with types
and defaults is ``adapter.settings.SETTINGS``, and the README's Configuration section), and the
per-worker Celery settings recommended for jobs (``adapter.settings.recommended_celery_settings``:
prefetch 1, retry the broker at start-up, JSON only, ...), which ``jobqueue check`` checks.
None of them changes how your own tasks are acknowledged or keep results: the adapter's task
sets acks late, reject on worker lost, no result and JSON for itself. Unset, the broker is the
embedded ``filesystem://`` (no server) and the store a SQLite file in the data dir.

Add your own Celery settings below the line that reads them; they win.
"""

from adapter.settings import celery_settings_from_environment

globals().update(celery_settings_from_environment())
