"""Celery settings for the adapter, read from the environment: an example to copy.

Use it with ``app.config_from_object("celeryconfig")``. It holds Celery's settings that jobs
rely on (``adapter.settings.recommended_celery_settings``: acks late, reject on worker lost,
prefetch 1, JSON only, persistent delivery, ...) and every setting of ``adapter.settings``
from its environment variable, for example:

ADAPTER_BROKER_URL   broker URL (CELERY_BROKER_URL is read when it is unset); default
                     ``filesystem://``, the embedded broker: no server, works across the
                     processes of one machine
ADAPTER_STORE_URL    job store URL; default: the result backend's Redis or database
                     (CELERY_RESULT_BACKEND), else ``sqlite:///$ADAPTER_DATA_DIR/jobs.sqlite3``
ADAPTER_DATA_DIR     where the embedded broker and store keep their files
                     (default ``~/.local/share/adapter``)
ADAPTER_HEARTBEAT_INTERVAL, ADAPTER_HEARTBEAT_TIMEOUT, ADAPTER_MAX_REDELIVERIES
                     how lost workers are noticed (seconds, seconds, count)

Add your own Celery settings below the line that reads them; they win.
"""

from adapter.settings import celery_settings_from_environment

globals().update(celery_settings_from_environment())
