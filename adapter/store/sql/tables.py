"""The SQL store's tables: jobs (Vendure's ``job_record``), dead letters, and the schema version.

Times are stored as UTC without a zone (``adapter.store.sql.statements`` turns them back into
aware datetimes). Columns added after the first release are added to an older table on open
(``adapter.store.sql.migrate``).
"""

from __future__ import annotations

import sqlalchemy as sa

from adapter.job import MAX_UNIQUE_KEY_LENGTH

#: Version of the table layout below. Columns and indexes added since are not a new version:
#: an older table gains them on open (``adapter.store.sql.migrate``) and older releases keep
#: working beside it; bump it only for a layout they cannot use.
SCHEMA_VERSION = 1

metadata = sa.MetaData()
jobs = sa.Table(
    "adapter_job",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("queue_name", sa.String(200), nullable=False),
    sa.Column("data", sa.Text, nullable=True),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("progress", sa.Float, nullable=False, default=0),
    sa.Column("result", sa.Text, nullable=True),
    sa.Column("error", sa.Text, nullable=True),
    sa.Column("retries", sa.Integer, nullable=False, default=0),
    sa.Column("attempts", sa.Integer, nullable=False, default=0),
    sa.Column("created_at", sa.DateTime, nullable=False),
    sa.Column("started_at", sa.DateTime, nullable=True),
    sa.Column("settled_at", sa.DateTime, nullable=True),
    sa.Column("updated_at", sa.DateTime, nullable=False),
    sa.Column("is_settled", sa.Boolean, nullable=False, default=False),
    # Added after the first release: a table made before gains them on open (migrate.py).
    sa.Column("ready_at", sa.DateTime, nullable=True),
    sa.Column("priority", sa.Integer, nullable=False, server_default="0"),
    sa.Column("unique_key", sa.String(MAX_UNIQUE_KEY_LENGTH), nullable=True),
    sa.Column("retried_from", sa.String(64), nullable=True),
    sa.Column("timeout", sa.Float, nullable=True),
    # Internal, not a job field: when the promoter publishes the job (adapter.store.scheduling).
    sa.Column("due_at", sa.DateTime, nullable=True),
    sa.Index("ix_adapter_job_queue_state_created", "queue_name", "state", "created_at"),
    sa.Index("ix_adapter_job_created", "created_at"),
    sa.Index("ix_adapter_job_state_ready", "state", "ready_at"),
    sa.Index("ix_adapter_job_retried_from", "retried_from"),
    sa.Index("ix_adapter_job_due", "due_at"),
    sa.Index("ix_adapter_job_unique", "queue_name", "unique_key"),
)
dead_letters = sa.Table(
    "adapter_dead_letter",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("received_at", sa.DateTime, nullable=False, index=True),
    sa.Column("queue", sa.String(255), nullable=False),
    sa.Column("task_name", sa.String(255), nullable=True),
    sa.Column("task_id", sa.String(255), nullable=True),
    sa.Column("content_type", sa.String(255), nullable=True),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("body", sa.Text, nullable=False),
    sa.Column("headers", sa.Text, nullable=False),
)
meta = sa.Table(
    "adapter_meta",
    metadata,
    sa.Column("key", sa.String(64), primary_key=True),
    sa.Column("value", sa.String(200), nullable=False),
)
