"""Vendure's JobListOptions for ``find_many``: the typed options and what they mean.

Every store answers ``find_many`` with these semantics; the SQL store spells them in SQL
(``adapter.store.sql.query``), stores without SQL evaluate them with ``adapter.conditions``.
They are Vendure's ``ListQueryBuilder`` (its SQL strategy):

- Each operator of each field is one condition. The conditions of one level are combined with
  that level's operator: ``filter_operator`` at the top, AND inside ``_and``, OR inside ``_or``.
  The members of an ``_and``/``_or`` list are flattened into that group, so
  ``_or: [{queueName: ..., state: ...}]`` means queueName OR state. Groups nest; an empty group
  is ignored, and no conditions at all match every job.
- A comparison with a missing value (``started_at``/``settled_at`` of a job that has none) is
  never true, as in SQL; only ``isNull`` looks at missing values.
- ``between`` includes both ends (SQL ``BETWEEN``; Vendure's in-memory strategy excludes them).
- ``contains``/``notContains`` trim the operand and ignore case (``ILIKE`` on PostgreSQL,
  ``LIKE`` on SQLite, where only ASCII letters fold); ``%`` and ``_`` are literal characters.
- ``regex`` searches anywhere in the value and ignores case (PostgreSQL ``~*``); the pattern must
  compile as a Python regular expression, is bounded in length and matching time
  (``adapter.patterns``). ``in: []`` matches nothing, ``notIn: []`` everything.
- Dates compare as timezone-aware datetimes; ISO strings are accepted, a naive time is UTC, and
  a time must stay within years 1 to 9999 once moved to UTC.
  ``duration`` is ``Job.duration`` in milliseconds.
- Every store can answer every accepted option: text holds no NUL and is valid Unicode,
  ``skip`` is at most ``MAX_SKIP``, a filter holds at most ``MAX_FILTER_VALUES`` values in all
  (each item of an ``in`` list counts) and nests ``_and``/``_or`` at most ``MAX_FILTER_DEPTH``
  levels deep; anything else is refused with ``InvalidListOptionsError`` naming the option,
  never left to fail in a database.
- Sorting follows the ``sort`` keys in order, missing values first when ascending and last when
  descending, then ``id`` ascending as a tie-breaker; no sort means ``created_at`` ascending.
- ``take`` defaults to ``DEFAULT_TAKE``; a larger ``take`` than ``MAX_TAKE`` is refused.
  ``total_items`` counts every match, before ``skip``/``take``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic import ValidationError as PydanticValidationError
from pydantic.alias_generators import to_camel
from pydantic_core import ErrorDetails

from adapter.errors import InvalidListOptionsError
from adapter.job import Job
from adapter.patterns import check_pattern

#: Jobs per page when ``take`` is not given.
DEFAULT_TAKE = 100
#: Largest ``take`` accepted, in jobs (Vendure's default admin list query limit).
MAX_TAKE = 1000
#: Largest ``skip``: SQL's OFFSET is a signed 64-bit integer.
MAX_SKIP = 2**63 - 1
#: Values one filter may hold in all, each list item counted (SQLite binds at most 32,766
#: parameters per statement, PostgreSQL 65,535).
MAX_FILTER_VALUES = 10_000
#: Levels of ``_and``/``_or`` one filter may nest.
MAX_FILTER_DEPTH = 32
#: Characters of a refused value an error message shows.
SHOWN_CHARS = 80


class SortOrder(StrEnum):
    """Direction of one sort key."""

    ASC = "ASC"
    DESC = "DESC"


class LogicalOperator(StrEnum):
    """How the conditions of one filter level combine."""

    AND = "AND"
    OR = "OR"


class SortField(StrEnum):
    """The job fields a list can be sorted by (Vendure's ``JobSortParameter``)."""

    ATTEMPTS = "attempts"
    CREATED_AT = "created_at"
    DURATION = "duration"
    ID = "id"
    PRIORITY = "priority"
    PROGRESS = "progress"
    QUEUE_NAME = "queue_name"
    READY_AT = "ready_at"
    RETRIES = "retries"
    SETTLED_AT = "settled_at"
    STARTED_AT = "started_at"


def _utc(value: datetime) -> datetime:
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    try:
        return value.astimezone(UTC)
    except OverflowError:
        raise ValueError("a time outside years 1 to 9999 once moved to UTC") from None


Moment = Annotated[datetime, AfterValidator(_utc)]


def _storable(value: str) -> str:
    if "\x00" in value:
        raise ValueError("text with a NUL character, which no stored text holds")
    try:
        value.encode()
    except UnicodeEncodeError:
        raise ValueError("text that is not valid Unicode (a lone surrogate)") from None
    return value


#: Text a filter compares: what every database can take as a parameter.
Text = Annotated[str, AfterValidator(_storable)]


class _Options(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")


class StringOperators(_Options):
    """Vendure's StringOperators."""

    eq: Text | None = None
    not_eq: Text | None = None
    contains: Text | None = None
    not_contains: Text | None = None
    in_: list[Text] | None = Field(default=None, alias="in", max_length=MAX_FILTER_VALUES)
    not_in: list[Text] | None = Field(default=None, max_length=MAX_FILTER_VALUES)
    regex: Text | None = None
    is_null: bool | None = None

    @field_validator("regex")
    @classmethod
    def _compiles(cls, value: str | None) -> str | None:
        return None if value is None else check_pattern(value)


class IdOperators(_Options):
    """Vendure's IdOperators; numeric ids are taken as their decimal text."""

    model_config = ConfigDict(coerce_numbers_to_str=True)

    eq: Text | None = None
    not_eq: Text | None = None
    in_: list[Text] | None = Field(default=None, alias="in", max_length=MAX_FILTER_VALUES)
    not_in: list[Text] | None = Field(default=None, max_length=MAX_FILTER_VALUES)
    is_null: bool | None = None


class NumberRange(_Options):
    """Bounds of a number ``between``, both included."""

    start: float
    end: float


class NumberOperators(_Options):
    """Vendure's NumberOperators."""

    eq: float | None = None
    lt: float | None = None
    lte: float | None = None
    gt: float | None = None
    gte: float | None = None
    between: NumberRange | None = None
    is_null: bool | None = None


class DateRange(_Options):
    """Bounds of a date ``between``, both included."""

    start: Moment
    end: Moment


class DateOperators(_Options):
    """Vendure's DateOperators."""

    eq: Moment | None = None
    before: Moment | None = None
    after: Moment | None = None
    between: DateRange | None = None
    is_null: bool | None = None


class BooleanOperators(_Options):
    """Vendure's BooleanOperators."""

    eq: bool | None = None
    is_null: bool | None = None


class JobFilter(_Options):
    """Vendure's JobFilterParameter: operators per field, plus nested ``_and``/``_or`` groups."""

    id: IdOperators | None = None
    queue_name: StringOperators | None = None
    state: StringOperators | None = None
    is_settled: BooleanOperators | None = None
    attempts: NumberOperators | None = None
    duration: NumberOperators | None = None
    progress: NumberOperators | None = None
    retries: NumberOperators | None = None
    created_at: DateOperators | None = None
    started_at: DateOperators | None = None
    settled_at: DateOperators | None = None
    ready_at: DateOperators | None = None
    priority: NumberOperators | None = None
    unique_key: StringOperators | None = None
    retried_from: IdOperators | None = None
    and_: list[JobFilter] | None = Field(default=None, alias="_and")
    or_: list[JobFilter] | None = Field(default=None, alias="_or")


_SORT_FIELD_BY_ALIAS = {to_camel(field.value): field.value for field in SortField}


class JobListOptions(_Options):
    """Vendure's JobListOptions: pagination, sort keys in order, filter and its operator."""

    skip: int | None = Field(default=None, ge=0, le=MAX_SKIP)
    take: int | None = Field(default=None, ge=0)
    sort: dict[SortField, SortOrder] = Field(default_factory=dict)
    filter: JobFilter | None = None
    filter_operator: LogicalOperator = LogicalOperator.AND

    @field_validator("sort", mode="before")
    @classmethod
    def _snake_case_keys(cls, value: Any) -> Any:
        if value is None:
            return {}
        if isinstance(value, Mapping):
            return {_SORT_FIELD_BY_ALIAS.get(key, key): order for key, order in value.items()}
        return value

    @model_validator(mode="after")
    def _answerable(self) -> JobListOptions:
        values, depth = _filter_size(self.filter)
        if values > MAX_FILTER_VALUES:
            raise ValueError(
                f"filter: {values} values in all, more than the limit of {MAX_FILTER_VALUES}"
            )
        if depth > MAX_FILTER_DEPTH:
            raise ValueError(
                f"filter: _and/_or nested {depth} levels deep, more than the limit of "
                f"{MAX_FILTER_DEPTH}"
            )
        return self


def _filter_size(filter: JobFilter | None) -> tuple[int, int]:
    """Return how many values ``filter`` holds (list items counted) and how deep it nests."""
    if filter is None:
        return 0, 0
    values, depth = 0, 0
    for field, operators in filter:
        if field in ("and_", "or_") or operators is None:
            continue
        for _, operand in operators:
            values += len(operand) if isinstance(operand, list) else int(operand is not None)
    for member in (*(filter.and_ or ()), *(filter.or_ or ())):
        member_values, member_depth = _filter_size(member)
        values += member_values
        depth = max(depth, member_depth + 1)
    return values, depth


@dataclass(frozen=True)
class JobList:
    """One page of jobs and how many jobs match in all (Vendure's ``{items, totalItems}``)."""

    items: list[Job]
    total_items: int


def parse_list_options(options: JobListOptions | Mapping[str, Any] | None) -> JobListOptions:
    """Return ``options`` as JobListOptions, reading Vendure's camelCase dict; None is no options.

    Raises:
        InvalidListOptionsError: naming the path of each unknown field or operator or bad value.
    """
    if options is None:
        return JobListOptions()
    if isinstance(options, JobListOptions):
        return options
    try:
        return JobListOptions.model_validate(options)
    except PydanticValidationError as err:
        problems = "; ".join(_describe(error) for error in err.errors())
        raise InvalidListOptionsError(problems) from err


#: What an unknown key is, by the key that holds it (an operator unless listed).
_UNKNOWN = {"options": "option", "filter": "field", "between": "bound (use start and end)"}


def _describe(error: ErrorDetails) -> str:
    loc = error["loc"]
    if len(loc) > 1 and loc[0] == "sort" and isinstance(loc[1], str):
        loc = ("sort", to_camel(loc[1]), *loc[2:])  # sort keys were made snake_case to validate
    if error["type"] == "extra_forbidden":
        parent = loc[-2] if len(loc) > 1 else "options"
        if parent == "filter" or isinstance(parent, int):
            parent = "filter"
        what = _UNKNOWN.get(parent, "operator")
        return f"{_path(loc)}: unknown {what}"
    if loc and loc[-1] == "[key]":
        return f"{_path(loc[:-1])}: unknown sort field"
    if error["type"] == "missing":
        return f"{_path(loc)}: missing"
    if error["type"] == "value_error":
        message = str(error.get("ctx", {}).get("error", error["msg"]))
        if not loc:  # a check of the whole options, whose message names the option
            return message
    else:
        message = error["msg"][:1].lower() + error["msg"][1:]
    return f"{_path(loc)}: {message}, got {_shown(error['input'])}"


def _shown(value: Any) -> str:
    """Return the repr of a refused value, cut to ``SHOWN_CHARS`` characters."""
    text = repr(value)
    return text if len(text) <= SHOWN_CHARS else text[: SHOWN_CHARS - 3] + "..."


def _path(loc: tuple[int | str, ...]) -> str:
    path = "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in loc)
    return path.removeprefix(".") or "options"


def page_bounds(options: JobListOptions) -> tuple[int, int]:
    """Return ``(skip, take)`` with the defaults; raise InvalidListOptionsError above MAX_TAKE."""
    take = DEFAULT_TAKE if options.take is None else options.take
    if take > MAX_TAKE:
        raise InvalidListOptionsError(f"take: {take} is more than the limit of {MAX_TAKE}")
    return options.skip or 0, take
