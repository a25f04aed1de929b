"""The HTTP API against its own OpenAPI document (schemathesis through the ASGI app): no
request makes a 500, every error is JSON, every reply matches its documented schema."""

from __future__ import annotations

from typing import Any

import pytest
import schemathesis
from celery import Celery
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from starlette.routing import Route

from adapter import CeleryJobQueueStrategy
from adapter.job import Job, JobState
from adapter.store.memory import MemoryJobStore
from adapter.web import create_app
from adapter.web.api import routes
from adapter.web.openapi import openapi_document
from tests.unit.test_web_api import NoWorkers


def _app() -> Any:
    celery_app = Celery("web-openapi")
    celery_app.conf.update(broker_url="memory://", worker_hijack_root_logger=False)
    strategy = CeleryJobQueueStrategy(celery_app, store=MemoryJobStore(), embedded_worker=False)
    for state in (JobState.PENDING, JobState.FAILED, JobState.COMPLETED):
        strategy.store.insert(Job(id=state.value, queue_name="mail", state=state, data={"n": 1}))
    return create_app(strategy, workers=NoWorkers(), allowed_hosts=["*"])  # its test client


APP = _app()
SCHEMA = schemathesis.openapi.from_asgi("/api/openapi.json", APP)
CSRF = APP.state.dashboard.csrf_token


@SCHEMA.parametrize()
@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
def test_no_request_makes_a_server_error_and_every_error_is_json(case: Any) -> None:
    case.headers = {**(case.headers or {}), "X-CSRF-Token": CSRF}
    response = case.call()
    case.validate_response(
        response,
        checks=[
            not_a_server_error,
            status_code_conformance,
            content_type_conformance,
            response_schema_conformance,
        ],
    )
    if response.status_code >= 400:
        assert "error" in response.json()


def test_every_api_route_is_documented() -> None:
    api = {route.path for route in routes() if isinstance(route, Route)}
    api = {path for path in api if path.startswith("/api/") and path != "/api/openapi.json"}
    assert api == set(openapi_document()["paths"])


@pytest.mark.parametrize("path", sorted(openapi_document()["paths"]))
def test_each_documented_operation_has_a_summary_and_json_errors(path: str) -> None:
    for operation in openapi_document()["paths"][path].values():
        assert operation["summary"]
        assert "application/json" in operation["responses"]["403"]["content"]
