"""Job data made JSON-safe, as Vendure's Job constructor does, and checked before it is sent.

``sanitize`` converts what has an obvious JSON form (datetimes, dataclasses, pydantic models,
enums, UUIDs, tuples) and marks cycles and over-deep nesting as Vendure does. Anything else is
left in place, so that ``ensure_json`` can refuse it at ``add`` with the key path that holds it.

One deliberate difference from Vendure: a cycle is an object that contains itself (an ancestor
on the current path). Vendure also flags an object merely shared by two sibling keys when the
second path is longer; here a shared object is copied at both places.

Most job data is already plain JSON: dicts with string keys, lists, strings, numbers, booleans
and None, nested at most ``MAX_DEPTH`` levels. ``sanitize`` copies such data first with a lean
loop that converts nothing (a few microseconds for a small object, against about 15 for the full
walk), and walks it again the full way only when that loop meets anything else (another type,
a non-string key, nesting past ``MAX_DEPTH``, which a cycle always reaches): the result is the
same either way.
"""

from __future__ import annotations

import dataclasses
import enum
import json
import math
import uuid
from collections.abc import Mapping
from datetime import UTC, date, datetime, time
from typing import Any

from pydantic import BaseModel

from adapter.errors import JobDataError
from adapter.settings import MAX_DATA_BYTES

#: Nesting levels kept before a value is replaced by ``MAX_DEPTH_MARKER`` (Vendure: 10).
MAX_DEPTH = 10
MAX_DEPTH_MARKER = "[max depth reached]"


def sanitize(value: Any) -> Any:
    """Return a JSON-safe deep copy of ``value``, converting what Vendure converts."""
    try:
        return _plain_copy(value, 0)
    except _NotPlain:
        return _sanitize(value, path=(), ancestors={}, depth=0)


#: Types ``sanitize`` keeps as they are, compared exactly (a subclass takes the full walk).
_SCALARS = frozenset({str, int, float, bool, type(None)})


class _NotPlain(Exception):
    """Raised by ``_plain_copy`` for data that needs the full walk."""


def _plain_copy(value: Any, depth: int) -> Any:
    """Return a copy of plain JSON data as ``_sanitize`` would; raise _NotPlain for the rest."""
    kind = type(value)
    if kind in _SCALARS:
        return value
    if depth > MAX_DEPTH:
        raise _NotPlain
    if kind is dict:
        copy = {}
        for key, item in value.items():
            if type(key) is not str:
                raise _NotPlain
            copy[key] = item if type(item) in _SCALARS else _plain_copy(item, depth + 1)
        return copy
    if kind is list:
        return [item if type(item) in _SCALARS else _plain_copy(item, depth + 1) for item in value]
    raise _NotPlain


def _sanitize(value: Any, path: tuple[str, ...], ancestors: dict[int, Any], depth: int) -> Any:
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if depth > MAX_DEPTH:
        return MAX_DEPTH_MARKER
    if isinstance(value, datetime):
        return _iso_datetime(value)
    if isinstance(value, (date, time)):
        return value.isoformat()
    if isinstance(value, enum.Enum):
        return _sanitize(value.value, path, ancestors, depth)
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        fields = {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}
        return _sanitize_container(fields, path, ancestors, depth, key=id(value))
    if isinstance(value, (Mapping, list, tuple)):
        return _sanitize_container(value, path, ancestors, depth, key=id(value))
    return value


def _sanitize_container(
    value: Mapping[Any, Any] | list[Any] | tuple[Any, ...],
    path: tuple[str, ...],
    ancestors: dict[int, Any],
    depth: int,
    key: int,
) -> Any:
    if key in ancestors:
        return "[circular *" + ".".join(path) + "]"
    ancestors[key] = value
    try:
        if isinstance(value, Mapping):
            return {
                _json_key(k): _sanitize(v, (*path, str(k)), ancestors, depth + 1)
                for k, v in value.items()
            }
        return [_sanitize(v, (*path, str(i)), ancestors, depth + 1) for i, v in enumerate(value)]
    finally:
        del ancestors[key]


def _json_key(key: Any) -> Any:
    # JSON object keys are strings; numbers and booleans are written as JSON writes them.
    if isinstance(key, bool):
        return "true" if key else "false"
    if isinstance(key, (int, float)):
        return str(key)
    return key


def _iso_datetime(value: datetime) -> str:
    if value.tzinfo is None:
        return value.isoformat()
    utc = value.astimezone(UTC)
    return utc.isoformat(timespec="milliseconds").replace("+00:00", "Z")


#: How ``ensure_json`` writes: compact, ASCII only (non-ASCII as ``\u`` escapes, so a text's
#: length is its size in bytes), NaN and infinities refused. One encoder for every call:
#: ``json.dumps`` with options builds a new one each time.
_ENCODER = json.JSONEncoder(allow_nan=False, separators=(",", ":"))


def ensure_json(value: Any, root: str = "data") -> str:
    """Return ``value`` encoded as JSON, or raise JobDataError naming the first bad key path."""
    try:
        return _ENCODER.encode(value)
    except (TypeError, ValueError) as err:
        problem = _find_problem(value, root) or str(err)
        raise JobDataError(f"{root} is not JSON-serializable: {problem}") from err


def check_data_size(data: Any, limit: int) -> None:
    """Raise JobDataError when ``data`` as JSON is longer than ``limit`` bytes."""
    size = len(ensure_json(data))  # ASCII: characters are bytes
    if size > limit:
        raise JobDataError(
            f"job data is {size} bytes of JSON; the limit is {limit} (setting {MAX_DATA_BYTES.key})"
        )


def _find_problem(value: Any, path: str, ancestors: frozenset[int] = frozenset()) -> str:
    if isinstance(value, (Mapping, list, tuple)):
        if id(value) in ancestors:
            return f"{path} contains itself"
        ancestors = ancestors | {id(value)}
    if isinstance(value, Mapping):
        for key, item in value.items():
            if not isinstance(key, (str, int, float, bool)) and key is not None:
                return f"{path} has a key of type {type(key).__name__} ({key!r}); use strings"
            found = _find_problem(item, f"{path}.{key}", ancestors)
            if found:
                return found
        return ""
    if isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            found = _find_problem(item, f"{path}[{index}]", ancestors)
            if found:
                return found
        return ""
    if isinstance(value, float) and not math.isfinite(value):
        return f"{path} is {value!r}, which JSON cannot represent"
    if value is None or isinstance(value, (bool, int, float, str)):
        return ""
    return f"{path} is a {type(value).__name__}, which has no JSON form"
