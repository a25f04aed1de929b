"""Vendure's job-queue interface on Celery: jobs, strategies and stores.

Jobs and states::

    Job, JobState, SETTLED_STATES

The documented interface and its Celery implementation::

    JobQueueStrategy, InspectableJobQueueStrategy, CeleryJobQueueStrategy

Retries::

    BackoffStrategy, constant_backoff, exponential_backoff
"""

from adapter.backoff import BackoffStrategy, constant_backoff, exponential_backoff
from adapter.celery import CeleryJobQueueStrategy
from adapter.errors import (
    ConfigurationError,
    InvalidJobMessageError,
    InvalidQueueNameError,
    JobDataError,
    JobFailedError,
    JobQueueError,
    ProcessNotImportableError,
    PublishError,
    StoreError,
)
from adapter.job import SETTLED_STATES, Job, JobState
from adapter.store import JobStore, open_store
from adapter.strategy import InspectableJobQueueStrategy, JobQueueStrategy

__all__ = [
    "SETTLED_STATES",
    "BackoffStrategy",
    "CeleryJobQueueStrategy",
    "ConfigurationError",
    "InspectableJobQueueStrategy",
    "InvalidJobMessageError",
    "InvalidQueueNameError",
    "Job",
    "JobDataError",
    "JobFailedError",
    "JobQueueError",
    "JobQueueStrategy",
    "JobState",
    "JobStore",
    "ProcessNotImportableError",
    "PublishError",
    "StoreError",
    "constant_backoff",
    "exponential_backoff",
    "open_store",
]
