"""Vendure's job-queue interface on Celery: jobs, strategies and stores.

Jobs and states::

    Job, JobState, SETTLED_STATES

The documented interface and its Celery implementation::

    JobQueueStrategy, InspectableJobQueueStrategy, CeleryJobQueueStrategy

Retries::

    BackoffStrategy, constant_backoff, exponential_backoff

Scheduled tasks and retention (``adapter.scheduling``, ``adapter.retention``)::

    ScheduledTask, ScheduledRun, ScheduledTaskInfo, RetentionRule

Importing ``adapter`` imports neither celery nor kombu: ``CeleryJobQueueStrategy`` is imported
on first use (PEP 562), so ``from adapter import Job`` stays light and changes nothing in the
program. Settings are listed in ``adapter.settings``.
"""

from typing import TYPE_CHECKING, Any

from adapter.backoff import BackoffStrategy, constant_backoff, exponential_backoff
from adapter.buffer import InMemoryJobBufferStorage, JobBuffer, JobBufferStorage
from adapter.errors import (
    BrokerError,
    BulkPublishError,
    ConfigurationError,
    DuplicateJobError,
    InvalidJobError,
    InvalidJobMessageError,
    InvalidListOptionsError,
    InvalidQueueNameError,
    JobCancelledError,
    JobDataError,
    JobFailedError,
    JobNotWaitingError,
    JobQueueError,
    JobResultTimeoutError,
    JobTimeLimitError,
    ProcessNotImportableError,
    PublishError,
    ScheduleError,
    StoreError,
)
from adapter.job import SETTLED_STATES, Job, JobState
from adapter.listing import JobList, JobListOptions
from adapter.retention import RetentionRule
from adapter.scheduling import ScheduledRun, ScheduledTask, ScheduledTaskInfo
from adapter.service import ErrorHandler, JobQueue, JobQueueInfo, JobQueueService
from adapter.store import JobStore, open_store
from adapter.strategy import InspectableJobQueueStrategy, JobQueueStrategy
from adapter.subscribable import JobUpdate, SubscribableJob

if TYPE_CHECKING:
    from adapter.celery import CeleryJobQueueStrategy
    from adapter.store.sql.buffers import SqlJobBufferStorage

__all__ = [
    "SETTLED_STATES",
    "BackoffStrategy",
    "BrokerError",
    "BulkPublishError",
    "CeleryJobQueueStrategy",
    "ConfigurationError",
    "DuplicateJobError",
    "ErrorHandler",
    "InMemoryJobBufferStorage",
    "InspectableJobQueueStrategy",
    "InvalidJobError",
    "InvalidJobMessageError",
    "InvalidListOptionsError",
    "InvalidQueueNameError",
    "Job",
    "JobBuffer",
    "JobBufferStorage",
    "JobCancelledError",
    "JobDataError",
    "JobFailedError",
    "JobList",
    "JobListOptions",
    "JobNotWaitingError",
    "JobQueue",
    "JobQueueError",
    "JobQueueInfo",
    "JobQueueService",
    "JobQueueStrategy",
    "JobResultTimeoutError",
    "JobState",
    "JobStore",
    "JobTimeLimitError",
    "JobUpdate",
    "ProcessNotImportableError",
    "PublishError",
    "RetentionRule",
    "ScheduleError",
    "ScheduledRun",
    "ScheduledTask",
    "ScheduledTaskInfo",
    "SqlJobBufferStorage",
    "StoreError",
    "SubscribableJob",
    "constant_backoff",
    "exponential_backoff",
    "open_store",
]


def __getattr__(name: str) -> Any:
    """Import the Celery- and SQLAlchemy-backed names when first asked for, not with ``adapter``."""
    if name == "CeleryJobQueueStrategy":
        from adapter.celery import CeleryJobQueueStrategy

        return CeleryJobQueueStrategy
    if name == "SqlJobBufferStorage":
        from adapter.store.sql.buffers import SqlJobBufferStorage

        return SqlJobBufferStorage
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
