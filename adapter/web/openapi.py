"""The OpenAPI 3.1 document of the HTTP admin API (served at ``/api/openapi.json``).

Written by hand beside the routes of ``adapter.web.api`` and ``adapter.web.operations``;
``tests/unit/test_web_openapi.py`` checks that every API route is in it, and schemathesis
calls each operation as documented.
"""

from __future__ import annotations

from typing import Any

from adapter.job import JobState
from adapter.listing import MAX_TAKE
from adapter.store.base import MAX_DEAD_LETTERS

_ERROR = {"$ref": "#/components/schemas/Error"}
_JOB = {"$ref": "#/components/schemas/Job"}
_OBJECT: dict[str, Any] = {"type": "object"}


def _reply(schema: dict[str, Any], *errors: int) -> dict[str, Any]:
    replies: dict[str, Any] = {"200": _json("OK", schema)}
    for status in (*errors, 401, 403, 503):
        replies[str(status)] = _json("error", _ERROR)
    return replies


def _json(description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _query(name: str, schema: dict[str, Any], description: str, many: bool = False) -> Any:
    if many:
        schema = {"type": "array", "items": schema}
    return {"name": name, "in": "query", "required": False, "schema": schema,
            "description": description, **({"explode": True} if many else {})}  # fmt: skip


def _path(name: str) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}


def _body(schema: dict[str, Any], required: bool = False) -> dict[str, Any]:
    return {"required": required, "content": {"application/json": {"schema": schema}}}


_PAGE = {
    "type": "object",
    "properties": {
        "items": {"type": "array", "items": _JOB},
        "totalItems": {"type": "integer"},
        "scanned": {"type": "integer"},
        "truncated": {"type": "boolean"},
    },
    "required": ["items", "totalItems"],
}
_STATE = {"type": "string", "enum": [state.value for state in JobState]}
_LIST_PARAMETERS = [
    _query("queue", {"type": "string"}, "only these queues", many=True),
    _query("state", _STATE, "only these states", many=True),
    _query("text", {"type": "string"}, "text in the job's data or error (ignoring case)"),
    _query("from", {"type": "string", "format": "date-time"}, "created at or after"),
    _query("to", {"type": "string", "format": "date-time"}, "created before"),
    _query("sort", {"type": "string"}, "FIELD:asc|desc, e.g. createdAt:desc"),
    _query("take", {"type": "integer", "minimum": 0, "maximum": MAX_TAKE}, "page size"),
    _query("skip", {"type": "integer", "minimum": 0}, "jobs skipped"),
]
_MANY = {
    "type": "object",
    "description": 'either "ids" or "options" (every job its filter matches)',
    "properties": {"ids": {"type": "array", "items": {"type": "string"}}, "options": _OBJECT},
}
_CSRF = {"name": "X-CSRF-Token", "in": "header", "required": True, "schema": {"type": "string"}}


def _paths() -> dict[str, Any]:
    action_reply = _reply(_OBJECT, 400, 404, 409)
    return {
        "/api/meta": {"get": {"summary": "Actions offered, read-only, CSRF token",
                              "responses": _reply(_OBJECT)}},
        "/api/jobs": {"get": {"summary": "Vendure's jobs(options), from query parameters",
                              "parameters": _LIST_PARAMETERS, "responses": _reply(_PAGE, 400)}},
        "/api/jobs/search": {"post": {
            "summary": "Vendure's jobs(options): a JobListOptions body",
            "parameters": [_CSRF, _query("text", {"type": "string"}, "text in data or error")],
            "requestBody": _body(_OBJECT), "responses": _reply(_PAGE, 400)}},
        "/api/jobs-by-id": {"get": {
            "summary": "Vendure's jobsById(jobIds)",
            "parameters": [_query("id", {"type": "string"}, "job ids", many=True)],
            "responses": _reply({"type": "array", "items": _JOB}, 400)}},
        "/api/jobs/{job_id}": {"get": {"summary": "Vendure's job(jobId)",
                                       "parameters": [_path("job_id")],
                                       "responses": _reply(_JOB, 404)}},
        "/api/queues": {"get": {"summary": "Per queue: jobs by state, workers, last hour",
                                "responses": _reply({"type": "array", "items": _OBJECT})}},
        "/api/workers": {"get": {"summary": "Workers answering now",
                                 "responses": _reply({"type": "array", "items": _OBJECT})}},
        "/api/schedules": {"get": {"summary": "Scheduled tasks, where there is a scheduler",
                                   "responses": _reply({"type": "array", "items": _OBJECT})}},
        "/api/buffers": {"get": {"summary": "Vendure's jobBufferSize",
                                 "responses": _reply({"type": "array", "items": _OBJECT})}},
        "/api/dead-letters": {"get": {
            "summary": "Messages refused as not jobs, newest first",
            "parameters": [_query("take", {"type": "integer", "minimum": 0,
                                           "maximum": MAX_DEAD_LETTERS}, "how many")],
            "responses": _reply({"type": "array", "items": _OBJECT}, 400)}},
        "/api/remove-settled-jobs": {"post": {
            "summary": "Vendure's removeSettledJobs(queueNames, olderThan)",
            "parameters": [_CSRF], "requestBody": _body({"type": "object", "properties": {
                "queueNames": {"type": "array", "items": {"type": "string"}},
                "olderThan": {"type": "string", "format": "date-time"}}}),
            "responses": _reply(_OBJECT, 400)}},
        "/api/buffers/flush": {"post": {
            "summary": "Vendure's flushBufferedJobs(bufferIds)", "parameters": [_CSRF],
            "requestBody": _body({"type": "object", "properties": {
                "bufferIds": {"type": "array", "items": {"type": "string"}}}}),
            "responses": _reply(_OBJECT, 400, 404)}},
        "/api/jobs/{job_id}/{action}": {"post": {
            "summary": "A job action (cancel, retry, remove) on one job",
            "parameters": [_CSRF, _path("job_id"), _path("action")], "responses": action_reply}},
        "/api/jobs/{action}": {"post": {
            "summary": "A job action on the given ids or every job matching options",
            "parameters": [_CSRF, _path("action")], "requestBody": _body(_MANY, required=True),
            "responses": action_reply}},
        "/api/queues/{target}/{action}": {"post": {
            "summary": "A queue action (pause, resume) where available",
            "parameters": [_CSRF, _path("target"), _path("action")], "responses": action_reply}},
        "/api/schedules/{target}/{action}": {"post": {
            "summary": "A scheduled task action (run-now, enable, disable) where available",
            "parameters": [_CSRF, _path("target"), _path("action")], "responses": action_reply}},
    }  # fmt: skip


_SCHEMAS = {
    "Error": {
        "type": "object",
        "properties": {"error": {"type": "string"}, "field": {"type": "string"}},
        "required": ["error"],
    },
    "Job": {
        "type": "object",
        "description": "Vendure's Job in camelCase (Job.to_wire), with duration and isSettled",
        "properties": {
            "id": {"type": "string"},
            "queueName": {"type": "string"},
            "data": {},
            "state": _STATE,
            "progress": {"type": "number"},
            "result": {},
            "error": {},
            "retries": {"type": "integer"},
            "attempts": {"type": "integer"},
            "createdAt": {"type": "string"},
            "startedAt": {"type": ["string", "null"]},
            "settledAt": {"type": ["string", "null"]},
            "duration": {"type": "integer"},
            "isSettled": {"type": "boolean"},
        },
        "required": ["id", "queueName", "state", "progress", "createdAt"],
    },
}


def openapi_document() -> dict[str, Any]:
    """Return the OpenAPI document of the API."""
    return {
        "openapi": "3.1.0",
        "info": {"title": "adapter job queue admin API", "version": "1"},
        "paths": _paths(),
        "components": {"schemas": _SCHEMAS},
    }
