"""Job and JobState: Vendure's job model as pure data, with Vendure's transition rules.

A Job holds no connection, store or app. Code that must react to ``set_progress`` (the worker
persisting progress) registers a listener with ``on("progress", fn)``, as in Vendure.
In Python the fields are snake_case; on the wire (``to_wire``/``from_wire``) they are
Vendure's camelCase JSON keys.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, field_validator
from pydantic.alias_generators import to_camel

from adapter.data import sanitize
from adapter.errors import InvalidJobMessageError, InvalidQueueNameError, JobCancelledError

logger = logging.getLogger(__name__)


class JobState(StrEnum):
    """The six states of a Vendure job."""

    PENDING = "PENDING"
    RUNNING = "RUNNING"
    COMPLETED = "COMPLETED"
    RETRYING = "RETRYING"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"


#: States a job never leaves once its ``settled_at`` is set.
SETTLED_STATES = frozenset({JobState.COMPLETED, JobState.FAILED, JobState.CANCELLED})
#: States from which a worker may start an attempt.
STARTABLE_STATES = frozenset({JobState.PENDING, JobState.RETRYING})

#: Longest queue name accepted, in characters.
MAX_QUEUE_NAME_LENGTH = 200
_QUEUE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]*")

ProgressListener = Callable[["Job"], None]


def validate_queue_name(queue_name: object) -> str:
    """Return ``queue_name`` if a broker accepts it everywhere, else raise InvalidQueueNameError."""
    if not isinstance(queue_name, str) or not queue_name:
        raise InvalidQueueNameError(f"queue name must be a non-empty string, got {queue_name!r}")
    if len(queue_name) > MAX_QUEUE_NAME_LENGTH:
        raise InvalidQueueNameError(
            f"queue name is {len(queue_name)} characters long; the limit is {MAX_QUEUE_NAME_LENGTH}"
        )
    if not _QUEUE_NAME.fullmatch(queue_name):
        raise InvalidQueueNameError(
            f"queue name {queue_name!r} is malformed: use letters, digits and '_.:-', "
            "starting with a letter or digit"
        )
    return queue_name


def utcnow() -> datetime:
    """Return the current time, timezone-aware, in UTC."""
    return datetime.now(UTC)


class Job(BaseModel):
    """A unit of work on a named queue, with Vendure's fields and transition methods."""

    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, extra="ignore", use_enum_values=False
    )

    id: str | None = None
    queue_name: str
    data: Any = None
    state: JobState = JobState.PENDING
    progress: int | float = 0
    result: Any = None
    error: Any = None
    retries: int = Field(default=0, ge=0)
    attempts: int = Field(default=0, ge=0)
    created_at: datetime = Field(default_factory=utcnow)
    started_at: datetime | None = None
    settled_at: datetime | None = None

    _progress_listeners: list[ProgressListener] = PrivateAttr(default_factory=list)

    @field_validator("id", mode="before")
    @classmethod
    def _falsy_id_is_none(cls, value: Any) -> Any:
        # Vendure: a falsy id such as 0 or "" means "not assigned yet".
        if not value:
            return None
        return str(value) if isinstance(value, int) else value

    @field_validator("data", mode="before")
    @classmethod
    def _sanitize_data(cls, value: Any) -> Any:
        return sanitize(value)

    @field_validator("created_at", "started_at", "settled_at", mode="after")
    @classmethod
    def _aware(cls, value: datetime | None) -> datetime | None:
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value

    @property
    def name(self) -> str:
        """Alias of ``queue_name`` (Vendure's ``job.name``)."""
        return self.queue_name

    @property
    def is_settled(self) -> bool:
        """True once the job has reached COMPLETED, FAILED or CANCELLED and says when."""
        return self.settled_at is not None and self.state in SETTLED_STATES

    @property
    def duration(self) -> int:
        """Milliseconds from the latest start to settlement (or to now while running)."""
        if self.state in STARTABLE_STATES:
            return 0
        end = self.settled_at or utcnow()
        start = self.started_at or end
        return (end - start) // timedelta(milliseconds=1)

    def start(self) -> None:
        """Begin an attempt: RUNNING, ``attempts`` + 1; only from PENDING or RETRYING."""
        if self.state in STARTABLE_STATES:
            self.state = JobState.RUNNING
            self.started_at = utcnow()
            self.attempts += 1
            logger.debug("job %s: attempt %d of %d", self.id, self.attempts, self.retries + 1)

    def set_progress(self, percent: float) -> None:
        """Record progress, capped at 100, and tell every progress listener."""
        self.progress = min(percent or 0, 100)
        for listener in list(self._progress_listeners):
            listener(self)

    def complete(self, result: Any = None) -> None:
        """Settle as COMPLETED with ``result``; progress becomes 100."""
        self.result = result
        self.progress = 100
        self.state = JobState.COMPLETED
        self.settled_at = utcnow()

    def fail(self, err: Any = None) -> None:
        """Record a failed attempt: RETRYING while retries remain, else FAILED and settled."""
        if isinstance(err, BaseException):
            self.error = str(err) or type(err).__name__
        else:
            self.error = getattr(err, "message", None) or str(err)
        self.progress = 0
        if self.retries >= self.attempts:
            self.state = JobState.RETRYING
            return
        if self.state != JobState.CANCELLED:
            self.state = JobState.FAILED
        self.settled_at = utcnow()

    def cancel(self) -> None:
        """Settle as CANCELLED."""
        self.settled_at = utcnow()
        self.state = JobState.CANCELLED

    def raise_if_cancelled(self) -> None:
        """Raise JobCancelledError if the job was cancelled (call it between steps of work)."""
        if self.state == JobState.CANCELLED:
            raise JobCancelledError(f"job {self.id} was cancelled")

    def defer(self) -> None:
        """Send a RUNNING job back to PENDING with attempts reset, for another worker."""
        if self.state == JobState.RUNNING:
            self.state = JobState.PENDING
            self.attempts = 0

    def on(self, event: str, listener: ProgressListener) -> None:
        """Register ``listener`` for ``event``; the only event is ``"progress"``."""
        self._check_event(event)
        self._progress_listeners.append(listener)

    def off(self, event: str, listener: ProgressListener) -> None:
        """Remove the first registration of ``listener`` for ``event``."""
        self._check_event(event)
        if listener in self._progress_listeners:
            self._progress_listeners.remove(listener)

    @staticmethod
    def _check_event(event: str) -> None:
        if event != "progress":
            raise ValueError(f"unknown job event {event!r}; the only event is 'progress'")

    def to_wire(self) -> dict[str, Any]:
        """Return the job as Vendure's camelCase JSON object."""
        return self.model_dump(mode="json", by_alias=True)

    @classmethod
    def from_wire(cls, payload: object) -> Job:
        """Build a job from its camelCase JSON object, or raise InvalidJobMessageError."""
        if not isinstance(payload, dict):
            raise InvalidJobMessageError(
                f"a job message must be a JSON object, got {type(payload).__name__}"
            )
        try:
            job = cls.model_validate(payload)
        except ValidationError as err:
            raise InvalidJobMessageError(f"not a valid job: {_first_error(err)}") from err
        if job.id is None:
            raise InvalidJobMessageError("not a valid job: it has no id")
        return job

    def snapshot(self) -> Job:
        """Return an independent copy without listeners (never hand out live instances)."""
        copied = self.model_copy(deep=True)
        copied._progress_listeners = []
        return copied


def _first_error(err: ValidationError) -> str:
    first = err.errors()[0]
    where = ".".join(str(part) for part in first["loc"]) or "job"
    return f"{where}: {first['msg']}"
