"""Celery settings for the adapter, read from the environment: the broker is chosen here.

ADAPTER_BROKER_URL   broker URL; ``amqp://guest:guest@127.0.0.1:5672//``, ``redis://127.0.0.1:6379/0``
                     or ``filesystem://`` (the embedded default: no server, works across the
                     processes of one machine). CELERY_BROKER_URL is read when it is unset.
ADAPTER_STORE_URL    job store URL; default: the result backend's Redis or database when one is
                     configured (CELERY_RESULT_BACKEND), else ``sqlite:///$ADAPTER_DATA_DIR/jobs.sqlite3``.
ADAPTER_DATA_DIR     where the embedded broker and store keep their files;
                     default ``~/.local/share/adapter``.
ADAPTER_HEARTBEAT_INTERVAL, ADAPTER_HEARTBEAT_TIMEOUT, ADAPTER_MAX_REDELIVERIES
                     how lost workers are noticed (seconds, seconds, count); see below.

Use it with ``app.config_from_object("celeryconfig")``.
"""

import os

from adapter.celery.embedded import filesystem_transport_options

_data_dir = os.path.abspath(
    os.path.expanduser(os.environ.get("ADAPTER_DATA_DIR", "~/.local/share/adapter"))
)

broker_url = os.environ.get("ADAPTER_BROKER_URL") or os.environ.get(
    "CELERY_BROKER_URL", "filesystem://"
)
# Unset, the store follows the deployment: the result backend's Redis or database if one is
# configured, else a SQLite file in the data dir (see adapter.celery.strategy.store_url_for).
adapter_store_url = os.environ.get("ADAPTER_STORE_URL")
adapter_data_dir = _data_dir

if broker_url.startswith("filesystem://"):
    broker_transport_options = filesystem_transport_options(_data_dir)

# Jobs are acknowledged after they ran, so a worker that dies mid-job does not lose it;
# a job whose pool process died is put back rather than marked failed.
task_acks_late = True
task_reject_on_worker_lost = True
# Take one message per free pool slot: a stopped queue leaves its waiting jobs in the broker.
worker_prefetch_multiplier = 1
# A running job beats every `adapter_heartbeat_interval` seconds; a job silent for
# `adapter_heartbeat_timeout` seconds lost its worker and is run again (adapter.celery.reaper),
# instead of waiting for Redis's hour-long visibility timeout or staying RUNNING for ever.
adapter_heartbeat_interval = float(os.environ.get("ADAPTER_HEARTBEAT_INTERVAL", "10"))
adapter_heartbeat_timeout = float(os.environ.get("ADAPTER_HEARTBEAT_TIMEOUT", "60"))
# Reject-on-worker-lost, bounded: a job that keeps killing its worker (OOM, a segfault) is
# started at most retries + 1 + this many times, then FAILED, instead of looping for ever.
adapter_max_redeliveries = int(os.environ.get("ADAPTER_MAX_REDELIVERIES", "3"))
# RabbitMQ: messages written to disk, so queued jobs outlive a broker restart (the job queues
# the adapter declares are durable: kombu's default, which it never turns off).
task_default_delivery_mode = "persistent"
# Keep retrying the broker at start-up instead of exiting on the first refused connection.
broker_connection_retry_on_startup = True
# JSON only: a message can never make a worker unpickle code.
task_serializer = "json"
accept_content = ["json"]
result_serializer = "json"
# Job state lives in the job store; Celery's own results are not needed.
task_ignore_result = True
result_backend = os.environ.get("CELERY_RESULT_BACKEND")
worker_hijack_root_logger = False
