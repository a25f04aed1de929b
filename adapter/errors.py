"""Every error the adapter raises: one base class, one "Raised when ..." line each."""


class JobQueueError(Exception):
    """Base class of every error raised by the adapter."""


class InvalidQueueNameError(JobQueueError, ValueError):
    """Raised when a queue name is empty or contains characters a broker may refuse."""


class JobDataError(JobQueueError, ValueError):
    """Raised when job data or a job result cannot become JSON; names the key path."""


class InvalidJobMessageError(JobQueueError, ValueError):
    """Raised when a message on the wire is not a valid job."""


class WrongQueueError(InvalidJobMessageError):
    """Raised when a message names a job stored for another queue; that job is not changed."""


class ProcessNotImportableError(JobQueueError, TypeError):
    """Raised when a prefork worker's children could not run the process handed to ``start``."""


class ConfigurationError(JobQueueError):
    """Raised when a setting (broker URL, store URL, worker options) is missing or wrong."""


class PublishError(JobQueueError):
    """Raised when the broker could not take a job's message; the job was not added."""


class BrokerError(JobQueueError):
    """Raised when the broker cannot be reached, or refuses a command such as a purge."""


class StoreError(JobQueueError):
    """Raised when the job store cannot be reached or refuses a write."""


class DuplicateJobError(StoreError):
    """Raised when a job is added with an id the store already holds."""


class JobCancelledError(JobQueueError):
    """Raised once a job was cancelled: in its process, or by ``wait_for_result()``."""


class JobTimeLimitError(JobQueueError):
    """Raised when an attempt ran out of its timeout (``adapter.deadlines``) or hit Celery's
    hard time limit: by ``job.raise_if_cancelled()``, and recorded as the attempt's error."""


class JobFailedError(JobQueueError):
    """Raised (recorded by Celery) when a job's final attempt fails; by ``wait_for_result`` too."""


class JobResultTimeoutError(JobQueueError, TimeoutError):
    """Raised by ``job.wait_for_result(timeout)`` when the job has not settled in time."""


class InvalidListOptionsError(JobQueueError, ValueError):
    """Raised when list options name an unknown field or operator, or a bad value."""


class InvalidJobError(JobQueueError, ValueError):
    """Raised when a job field is outside its range (``adapter.job.FIELD_RANGES``); names both."""


class InvalidQueueControlError(JobQueueError, ValueError):
    """Raised when a queue control has a bad value, or the strategy cannot keep controls."""


class BulkPublishError(PublishError):
    """Raised when the broker refused a message of ``add_many``; ``published`` lists the sent."""

    def __init__(self, message: str, published: list[int]) -> None:
        super().__init__(message)
        #: Indexes of the jobs whose messages were sent (and are recorded) before the failure.
        self.published = published


class UnknownJobError(JobQueueError, LookupError):
    """Raised when an operation names a job id the store does not hold."""


class JobNotRetryableError(JobQueueError, ValueError):
    """Raised by ``retry_job`` for a job that is not FAILED or CANCELLED; names its state."""


class ScheduleError(JobQueueError, ValueError):
    """Raised when a scheduled task, its schedule or a retention rule is invalid or unknown."""


class JobNotWaitingError(JobQueueError):
    """The job has started, settled or is unknown: it can no longer be rescheduled."""
