"""Job and JobState: Vendure's job model as pure data, with Vendure's transition rules.

A Job holds no connection, store or app. Code that must react to ``set_progress`` (the worker
persisting progress) registers a listener with ``on("progress", fn)``, as in Vendure.
In Python the fields are snake_case; on the wire (``to_wire``/``from_wire``) they are
Vendure's camelCase JSON keys.
"""

from __future__ import annotations

import functools
import logging
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Self

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, field_validator
from pydantic.alias_generators import to_camel
from pydantic_core import PydanticUndefined

from adapter.data import sanitize
from adapter.errors import (
    InvalidJobError,
    InvalidJobMessageError,
    InvalidQueueNameError,
    JobCancelledError,
    JobQueueError,
)

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


@dataclass(frozen=True, eq=False)  # compared and hashed by identity: each is one constant
class Transition:
    """One of the job's state changes as data, so Python, SQL and Lua apply the same rule.

    It applies to a job whose state is in ``sources``, or in ``stale_sources`` when the job's
    last sign of life (a store's ``updated_at``) is older than a cutoff the caller gives. It
    sets ``state`` (when given) and the constant ``values``, sets each field of ``stamps`` to
    the time of the change, takes the fields of ``given`` from the caller, and counts one more
    attempt when ``counts_attempt``. ``Job.apply`` applies it to a job object; a store applies
    it to stored jobs (``JobStore.apply``), adding the one guard every store keeps: a settled
    job (``settled_at`` set) is never changed.
    """

    name: str
    sources: frozenset[JobState]
    state: JobState | None = None
    values: Mapping[str, Any] = field(default_factory=dict)
    stamps: tuple[str, ...] = ()
    given: tuple[str, ...] = ()
    counts_attempt: bool = False
    stale_sources: frozenset[JobState] = frozenset()

    def check_given(self, given: Mapping[str, Any]) -> None:
        """Raise TypeError unless ``given`` names exactly the fields this transition takes."""
        if set(given) != set(self.given):
            raise TypeError(f"transition {self.name!r} takes {self.given}, not {dict(given)}")


#: Begin an attempt: from PENDING or RETRYING, or from RUNNING when its worker went silent
#: (a redelivery after a lost worker); RUNNING, one more attempt, started now.
START = Transition(
    "start",
    sources=STARTABLE_STATES,
    stale_sources=frozenset({JobState.RUNNING}),
    state=JobState.RUNNING,
    stamps=("started_at",),
    counts_attempt=True,
)
#: Send a RUNNING job back to PENDING with attempts reset, for another worker (shutdown).
DEFER = Transition(
    "defer", sources=frozenset({JobState.RUNNING}), state=JobState.PENDING, values={"attempts": 0}
)
#: Settle any job as CANCELLED (stores change only unsettled ones).
CANCEL = Transition(
    "cancel", sources=frozenset(JobState), state=JobState.CANCELLED, stamps=("settled_at",)
)
#: Settle a waiting job (PENDING or RETRYING) as CANCELLED, the reason as its error: its celery
#: queue was purged. A job running by then is left to finish.
PURGE = Transition(
    "purge",
    sources=STARTABLE_STATES,
    state=JobState.CANCELLED,
    stamps=("settled_at",),
    given=("error",),
)
#: A RUNNING job whose worker stopped beating: RETRYING, progress 0, the reason as its error.
LOSE = Transition(
    "lose",
    sources=frozenset(),
    stale_sources=frozenset({JobState.RUNNING}),
    state=JobState.RETRYING,
    values={"progress": 0},
    given=("error",),
)
#: A sign of life of a RUNNING job: only its ``updated_at`` changes (in a store).
BEAT = Transition("beat", sources=frozenset({JobState.RUNNING}))

#: Longest queue name accepted, in characters: the embedded broker's message file is named
#: ``<20-digit clock>_<uuid>.jobs.<queue name>.msg.tmp`` while written, at most 255 bytes.
MAX_QUEUE_NAME_LENGTH = 180
#: Letters, digits and ``_.-``, the characters every broker takes in a celery queue name
#: (kombu's ``filesystem://`` refuses ``:`` in an exchange name; RabbitMQ and Redis take all).
_QUEUE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
#: Longest job id, in characters: the SQL stores' id column is VARCHAR(64).
MAX_ID_LENGTH = 64
#: Most attempts a job records: PostgreSQL's INTEGER column is signed 32-bit (2**31 - 1).
MAX_ATTEMPTS = 2**31 - 1
#: Most retries a job may have; far below MAX_ATTEMPTS, which also counts lost-worker redeliveries.
MAX_RETRIES = 1_000_000_000
#: Highest progress, in percent (the lowest is 0).
MAX_PROGRESS = 100
#: Longest timeout of one attempt, in seconds (a year).
MAX_TIMEOUT_S = 365 * 24 * 3600
#: Highest priority a job may have (the lowest, and the default, is 0); higher starts first.
MAX_PRIORITY = 9
#: Longest unique key, in characters (the SQL stores' column is VARCHAR(200)).
MAX_UNIQUE_KEY_LENGTH = 200
#: Text without control characters, as ids and unique keys must be.
_NO_CONTROL_CHARS = r"^[^\x00-\x1f\x7f]*$"
#: What each bounded field accepts, in the words of the error that refuses a value outside it.
FIELD_RANGES = {
    "id": f"a string of 1 to {MAX_ID_LENGTH} characters and no control character, or None",
    "queue_name": (
        f"1 to {MAX_QUEUE_NAME_LENGTH} letters, digits and '_.-', starting with a letter or digit"
    ),
    "retries": f"an integer from 0 to {MAX_RETRIES}",
    "attempts": f"an integer from 0 to {MAX_ATTEMPTS}",
    "progress": f"a number from 0 to {MAX_PROGRESS}",
    "priority": f"an integer from 0 to {MAX_PRIORITY}",
    "timeout": f"a number of seconds above 0 and at most {MAX_TIMEOUT_S}, or None",
    "unique_key": (
        f"a string of 1 to {MAX_UNIQUE_KEY_LENGTH} characters and no control character, or None"
    ),
    "retried_from": (
        f"a string of 1 to {MAX_ID_LENGTH} characters and no control character, or None"
    ),
}

ProgressListener = Callable[["Job"], None]

#: Fields ``add`` resets to their defaults, whatever the caller's job says (``Job.as_added``).
_ADDED_FRESH_FIELDS = (
    "state",
    "progress",
    "result",
    "error",
    "attempts",
    "started_at",
    "settled_at",
)


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
            f"queue name {queue_name!r} is malformed: use letters, digits and '_.-', "
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

    id: str | None = Field(
        default=None, min_length=1, max_length=MAX_ID_LENGTH, pattern=_NO_CONTROL_CHARS
    )
    queue_name: str
    data: Any = None
    state: JobState = JobState.PENDING
    progress: int | float = Field(default=0, ge=0, le=MAX_PROGRESS)
    result: Any = None
    error: Any = None
    retries: int = Field(default=0, ge=0, le=MAX_RETRIES)
    attempts: int = Field(default=0, ge=0, le=MAX_ATTEMPTS)
    created_at: datetime = Field(default_factory=utcnow)
    started_at: datetime | None = None
    settled_at: datetime | None = None
    #: Not startable before this time; None: at once.
    ready_at: datetime | None = None
    #: 0 to MAX_PRIORITY; among waiting jobs of a queue a higher one starts first.
    priority: int = Field(default=0, ge=0, le=MAX_PRIORITY)
    #: While a job with this key waits in its queue, adding the same key returns that job.
    unique_key: str | None = Field(
        default=None, min_length=1, max_length=MAX_UNIQUE_KEY_LENGTH, pattern=_NO_CONTROL_CHARS
    )
    #: Seconds each attempt may run (``adapter.deadlines``); None: its queue's, or none.
    timeout: float | None = Field(default=None, gt=0, le=MAX_TIMEOUT_S, allow_inf_nan=False)
    #: Id of the job this one runs again.
    retried_from: str | None = Field(
        default=None, min_length=1, max_length=MAX_ID_LENGTH, pattern=_NO_CONTROL_CHARS
    )

    #: A tuple, replaced on change: private attributes hold no factory (``from_fields``).
    _progress_listeners: tuple[ProgressListener, ...] = PrivateAttr(default=())
    #: Set when the running attempt ran out of time (``adapter.deadlines``).
    _stop_error: JobQueueError | None = PrivateAttr(default=None)

    if not TYPE_CHECKING:  # hidden from mypy, whose pydantic plugin types ``Job(...)``'s fields

        def __init__(self, **fields: Any) -> None:
            """Build a job, or raise the adapter's error naming the first field out of range."""
            try:
                super().__init__(**fields)
            except ValidationError as err:
                raise _construction_error(err) from err

        # As RootModel does: pydantic then validates ``model_validate`` input without calling
        # this ``__init__``, so ``model_validate`` keeps raising pydantic's ValidationError.
        __init__.__pydantic_base_init__ = True

    @field_validator("queue_name", mode="before")
    @classmethod
    def _valid_queue_name(cls, value: Any) -> Any:
        return validate_queue_name(value)

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

    @field_validator("created_at", "started_at", "settled_at", "ready_at", mode="after")
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

    def apply(
        self,
        transition: Transition,
        *,
        stale: bool = False,
        now: datetime | None = None,
        **given: Any,
    ) -> bool:
        """Apply ``transition`` if the job's state allows it; return whether it did.

        ``stale`` says the job's worker went silent (``stale_sources`` then apply too);
        ``given`` holds the fields the transition takes from the caller.
        """
        transition.check_given(given)
        allowed = self.state in transition.sources or (
            stale and self.state in transition.stale_sources
        )
        if not allowed:
            return False
        at = now or utcnow()
        changes: dict[str, Any] = {**transition.values, **given}
        changes.update(dict.fromkeys(transition.stamps, at))
        if transition.counts_attempt:
            changes["attempts"] = self.attempts + 1
        if transition.state is not None:
            changes["state"] = transition.state
        for name, value in changes.items():
            setattr(self, name, value)
        return True

    def as_added(self, job_id: str) -> Job:
        """Return a copy as ``add`` records it (``added_fields``)."""
        return self.model_copy(update=added_fields(job_id))

    def start(self) -> None:
        """Begin an attempt: RUNNING, ``attempts`` + 1; only from PENDING or RETRYING."""
        if self.apply(START):
            logger.debug("job %s: attempt %d of %d", self.id, self.attempts, self.retries + 1)

    def set_progress(self, percent: float) -> None:
        """Record progress, kept within 0 to 100, and tell every progress listener."""
        self.progress = max(0, min(percent or 0, MAX_PROGRESS))  # max(0, nan) is 0
        for listener in self._progress_listeners:
            listener(self)

    def complete(self, result: Any = None) -> None:
        """Settle as COMPLETED with ``result``; progress becomes 100.

        The error of an earlier failed attempt (or of a lost worker) is cleared: it no longer
        describes the job. Vendure keeps it; a COMPLETED job showing an error misleads.
        """
        self.result = result
        self.error = None
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
        self.apply(CANCEL)

    def raise_if_cancelled(self) -> None:
        """Raise JobCancelledError if the job was cancelled (call it between steps of work).

        Once the attempt ran out of time, raise its JobTimeLimitError (``time_out``).
        """
        if self.state == JobState.CANCELLED:
            raise JobCancelledError(f"job {self.id} was cancelled")
        if self._stop_error is not None:
            raise self._stop_error

    def time_out(self, err: JobQueueError) -> None:
        """Tell the running process its attempt is out of time: it should stop (``err``)."""
        self._stop_error = err

    @property
    def timed_out(self) -> JobQueueError | None:
        """The error of an attempt that ran out of time, or None."""
        return self._stop_error

    def defer(self) -> None:
        """Send a RUNNING job back to PENDING with attempts reset, for another worker."""
        self.apply(DEFER)

    def on(self, event: str, listener: ProgressListener) -> None:
        """Register ``listener`` for ``event``; the only event is ``"progress"``."""
        self._check_event(event)
        self._progress_listeners = (*self._progress_listeners, listener)

    def off(self, event: str, listener: ProgressListener) -> None:
        """Remove the first registration of ``listener`` for ``event``."""
        self._check_event(event)
        listeners = list(self._progress_listeners)
        if listener in listeners:
            listeners.remove(listener)
            self._progress_listeners = tuple(listeners)

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
            reason = _first_error(err, wire=True)
            raise InvalidJobMessageError(f"not a valid job: {reason}") from err
        if job.id is None:
            raise InvalidJobMessageError("not a valid job: it has no id")
        return job

    def snapshot(self) -> Job:
        """Return an independent copy without listeners (never hand out live instances)."""
        copied = self.model_copy(deep=True)
        copied._progress_listeners = ()
        return copied

    @classmethod
    def from_fields(cls, fields: dict[str, Any]) -> Self:
        """Return a ``cls`` holding ``fields``, which name every field with a valid value.

        ``model_construct`` without its work per field (about 20 us a job in pydantic 2.x),
        for code that builds many jobs from values already checked, such as ``add_many``.
        ``fields`` becomes the job's own: the caller must not keep using it.
        """
        made = cls.__new__(cls)
        object.__setattr__(made, "__dict__", fields)
        object.__setattr__(made, "__pydantic_fields_set__", set(fields))
        object.__setattr__(made, "__pydantic_extra__", None)
        object.__setattr__(made, "__pydantic_private__", dict(_private_defaults(cls)))
        return made


@functools.cache
def _private_defaults(cls: type[Job]) -> dict[str, Any]:
    """The private attributes of a fresh ``cls``: constants, so one dict serves as the model."""
    defaults: dict[str, Any] = {}
    for name, attr in cls.__private_attributes__.items():
        if attr.default_factory is not None:
            raise TypeError(f"{cls.__name__}.{name}: Job.from_fields takes no default_factory")
        if attr.default is not PydanticUndefined:
            defaults[name] = attr.default
    return defaults


def check_fields(job: Job) -> None:
    """Raise the error ``Job(...)`` would unless every field of ``job`` but its data is valid.

    For a job changed after it was built (pydantic does not check assignments) or built with
    ``model_construct``; ``add`` calls it before publishing anything.
    """
    fields = {name: getattr(job, name) for name in _CHECKED_FIELDS}
    try:
        Job.__pydantic_validator__.validate_python(fields)
    except ValidationError as err:
        raise _construction_error(err) from err


#: The fields ``check_fields`` validates: all but the data, which ``add`` checks as JSON.
_CHECKED_FIELDS = tuple(name for name in Job.model_fields if name != "data")
#: The checked fields that can hold an invalid value (an ``Any`` field takes every value).
_CONSTRAINED_FIELDS = tuple(
    name for name in _CHECKED_FIELDS if Job.model_fields[name].annotation is not Any
)
#: Fields where every datetime is valid: a datetime, or None, with no constraint on it.
_ANY_DATETIME_FIELDS = frozenset(
    name
    for name in _CONSTRAINED_FIELDS
    if Job.model_fields[name].annotation in (datetime, datetime | None)
    and not Job.model_fields[name].metadata
)


class FieldChecks:
    """``check_fields`` for many jobs, validating once the fields that repeat (``add_many``).

    Jobs of one batch mostly share their fields but the creation time. A job whose constrained
    fields equal, value and type, those of a job found valid before is valid too, and is not
    validated again; in the fields that take any datetime, every datetime counts as equal.
    """

    def __init__(self) -> None:
        self._valid: set[tuple[Any, ...]] = set()

    def check(self, job: Job) -> None:
        """Raise what ``check_fields(job)`` raises, if anything."""
        values = job.__dict__
        key: tuple[Any, ...] | None = tuple(
            [
                datetime
                if name in _ANY_DATETIME_FIELDS and type(value) is datetime
                else (type(value), value)
                for name, value in zip(
                    _CONSTRAINED_FIELDS, map(values.__getitem__, _CONSTRAINED_FIELDS), strict=True
                )
            ]
        )
        try:
            if key in self._valid:
                return
        except TypeError:  # an unhashable value: the validation says what is wrong with it
            key = None
        check_fields(job)
        if key is not None:
            self._valid.add(key)


#: The value ``add`` gives each of ``_ADDED_FRESH_FIELDS``: its default (none is a factory).
_ADDED_DEFAULTS = {name: Job.model_fields[name].get_default() for name in _ADDED_FRESH_FIELDS}


def added_fields(job_id: str) -> dict[str, Any]:
    """Return the fields ``add`` sets on a job: this id, and every field a run changes back
    at its default (PENDING, no attempts, no progress, result or error, never started)."""
    return {"id": job_id, **_ADDED_DEFAULTS}


def _construction_error(err: ValidationError) -> JobQueueError:
    cause = err.errors()[0].get("ctx", {}).get("error")
    if isinstance(cause, JobQueueError):  # a validator's own error, such as a bad queue name
        return cause
    return InvalidJobError(f"invalid job: {_first_error(err, wire=False)}")


#: Python field name of each wire (camelCase) key.
_FIELD_OF_KEY = {info.alias or name: name for name, info in Job.model_fields.items()}


def _first_error(err: ValidationError, *, wire: bool) -> str:
    """Describe the first error: the field (a wire key when ``wire``) and what it must be."""
    first = err.errors()[0]
    loc = [str(part) for part in first["loc"]]
    field_name = _FIELD_OF_KEY.get(loc[0], loc[0]) if loc else ""
    info = Job.model_fields.get(field_name)
    if info is not None:
        loc[0] = (info.alias or field_name) if wire else field_name
    where = ".".join(loc) or "job"
    cause = first.get("ctx", {}).get("error")
    if isinstance(cause, JobQueueError):
        return str(cause)
    expected = FIELD_RANGES.get(field_name) if len(loc) == 1 else None
    if expected is None or first["type"] == "missing":
        return f"{where}: {first['msg']}"
    return f"{where} is {_shown(first['input'])}; it must be {expected}"


def _shown(value: Any) -> str:
    if isinstance(value, str) and len(value) > 40:
        return f"a string of {len(value)} characters"
    text = repr(value)
    return text if len(text) <= 40 else f"{text[:37]}..."
