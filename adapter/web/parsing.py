"""Reading a request: the app's Dashboard, a JSON body, the list's query parameters, numbers
and times; each bad value is an ApiError naming its field."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from starlette.requests import Request

from adapter.job import JobState
from adapter.listing import MAX_SKIP, MAX_TAKE
from adapter.web.app import ApiError, Dashboard

#: Jobs a list shows when ``take`` is not given.
PAGE_SIZE = 25
#: The sort of a list when none is given.
DEFAULT_SORT = "createdAt:desc"


def dashboard_of(request: Request) -> Dashboard:
    """Return the Dashboard of the app serving ``request``."""
    found: Dashboard = request.app.state.dashboard
    return found


async def json_body(request: Request, default: Any) -> Any:
    """Return the request's JSON body, ``default`` when empty; 400 naming "body" when bad."""
    raw = await request.body()
    if not raw.strip():
        return default
    try:
        return json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ApiError(400, f"the body is not valid JSON: {err}", "body") from err


def query_options(request: Request) -> tuple[dict[str, Any], str | None]:
    """Return JobListOptions and the text search of the list's query parameters."""
    params = request.query_params
    filters: dict[str, Any] = {}
    if queues := params.getlist("queue"):
        filters["queueName"] = {"in": queues}
    if states := params.getlist("state"):
        unknown = [s for s in states if s not in JobState.__members__]
        if unknown:
            raise ApiError(400, f"unknown job state {unknown[0][:50]!r}", "state")
        filters["state"] = {"in": states}
    created: dict[str, str] = {}
    for name, operator in (("from", "after"), ("to", "before")):
        when = moment(params.get(name), name)
        if when is not None:
            created[operator] = when.isoformat()
    if created:
        filters["createdAt"] = created
    field, _, order = (params.get("sort") or DEFAULT_SORT).partition(":")
    if order.lower() not in ("", "asc", "desc"):
        raise ApiError(400, f"sort order must be asc or desc, got {order[:20]!r}", "sort")
    options: dict[str, Any] = {
        "take": whole(params.get("take"), "take", PAGE_SIZE, MAX_TAKE),
        "skip": whole(params.get("skip"), "skip", 0, MAX_SKIP),
        "sort": {field: (order or "desc").upper()},
    }
    if filters:
        options["filter"] = filters
    return options, params.get("text")


def whole(text: str | None, field: str, default: int, high: int) -> int:
    """Return the integer ``text`` (from 0 to ``high``), ``default`` when absent; else a 400."""
    if text is None or text == "":
        return default
    try:
        value = int(text)
    except ValueError:
        value = -1
    if not 0 <= value <= high:
        raise ApiError(
            400, f"{field} must be an integer from 0 to {high}, got {text[:30]!r}", field
        )
    return value


def moment(value: object, field: str) -> datetime | None:
    """Return the ISO 8601 time ``value`` (naive means UTC), None when absent; else a 400."""
    if value is None or value == "":
        return None
    try:
        moment = datetime.fromisoformat(str(value))
    except ValueError:
        moment = None
    if moment is None or not 1 < moment.year < 9999:
        raise ApiError(400, f"{field} must be an ISO 8601 time, got {str(value)[:40]!r}", field)
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
