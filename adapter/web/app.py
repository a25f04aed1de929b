"""``create_app``: the dashboard and its HTTP admin API as one Starlette (ASGI) app.

The app holds a ``Dashboard`` (the strategy and what the handlers need) in ``app.state``; the
routes are in ``adapter.web.api`` (the page, the reads) and ``adapter.web.operations`` (the
POSTs), the page's assets in ``static/``. Every request passes ``_Guard``: the login when one
is set; then, for a POST, read-only mode and the CSRF checks. Errors are JSON
``{"error": ..., "field": ...}``.

More routes (e.g. ``/metrics``) go in through ``extra_routes``; they pass the same login.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import BaseRoute
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from adapter.errors import (
    BrokerError,
    ConfigurationError,
    InvalidListOptionsError,
    JobNotRetryableError,
    JobQueueError,
    StoreError,
    UnknownJobError,
)
from adapter.web.actions import Action, available
from adapter.web.auth import TOKEN_COOKIE, Auth, csrf_problem, is_loopback, who
from adapter.web.jobs import Redaction
from adapter.web.overview import WorkerSource

logger = logging.getLogger(__name__)

#: Default page refresh, in seconds (the page lets the reader change it).
DEFAULT_POLL_INTERVAL_S = 2.0
#: POST routes that change nothing and so pass in read-only mode (still CSRF-checked).
READ_POSTS = frozenset({"/api/jobs/search"})


@dataclass
class Dashboard:
    """What the handlers use: the strategy and the settings of this app."""

    strategy: Any
    service: Any = None
    workers: WorkerSource | None = None
    read_only: bool = False
    redaction: Redaction = field(default_factory=Redaction)
    poll_interval_s: float = DEFAULT_POLL_INTERVAL_S
    csrf_token: str = field(default_factory=lambda: secrets.token_urlsafe(32))
    actions: list[Action] = field(default_factory=list)
    shown_urls: dict[str, str] = field(default_factory=dict)


def create_app(
    strategy: Any,
    *,
    auth: Auth | None = None,
    read_only: bool = False,
    service: Any = None,
    workers: WorkerSource | None = None,
    redact_keys: Iterable[str] = (),
    poll_interval_s: float = DEFAULT_POLL_INTERVAL_S,
    shown_urls: dict[str, str] | None = None,
    extra_routes: Sequence[BaseRoute] = (),
    allowed_hosts: Sequence[str] | None = None,
) -> Starlette:
    """Return the dashboard app for ``strategy`` (an InspectableJobQueueStrategy).

    Args:
        strategy: the jobs' strategy; actions are offered where it has their methods.
        auth: the login required, or None (then serve it on a loopback address only).
        read_only: hide and refuse every action.
        service: a JobQueueService, for buffer sizes and flushes (else there are no buffers).
        workers: tells which workers run; default: ``WorkerInspector`` of the strategy's app.
        redact_keys: job data and result keys whose values are never shown.
        poll_interval_s: the page's default refresh interval.
        shown_urls: name -> URL shown on the page (masked here with ``mask_url``).
        extra_routes: more routes served behind the same login.
        allowed_hosts: the ``Host`` names accepted (``"*"``: any); default: any with a login,
            loopback names only without one (so a DNS-rebinding page cannot reach it).
    """
    from adapter.masking import mask_url
    from adapter.web.api import routes

    if not poll_interval_s > 0:
        raise ConfigurationError(f"poll interval must be more than 0 s, got {poll_interval_s}")
    dashboard = Dashboard(
        strategy=strategy,
        service=service,
        workers=workers if workers is not None else _default_workers(strategy),
        read_only=read_only,
        redaction=Redaction.of(redact_keys),
        poll_interval_s=poll_interval_s,
        actions=available(strategy, read_only),
        shown_urls={name: mask_url(url) for name, url in (shown_urls or {}).items()},
    )
    app = Starlette(
        routes=[*routes(), *extra_routes],
        middleware=[Middleware(_Guard, auth=auth, dashboard=dashboard, hosts=allowed_hosts)],
        exception_handlers={
            ApiError: _error_reply,
            JobQueueError: _error_reply,
            ValueError: _error_reply,
            HTTPException: _error_reply,
            Exception: _error_reply,  # Starlette's last resort: a 500, re-raised to the server
        },
    )
    app.state.dashboard = dashboard
    return app


def _default_workers(strategy: Any) -> WorkerSource | None:
    if getattr(strategy, "app", None) is None:
        return None
    from adapter.celery.workers import WorkerInspector

    return WorkerInspector(strategy.app)


class ApiError(Exception):
    """Raised by a handler to reply with a status and ``{"error", "field"}``."""

    def __init__(self, status: int, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.field = field


def error_json(status: int, message: str, field: str | None = None) -> JSONResponse:
    """Return the JSON reply of an error."""
    body: dict[str, Any] = {"error": message}
    if field is not None:
        body["field"] = field
    return JSONResponse(body, status_code=status)


async def _error_reply(request: Request, exc: Exception) -> Response:
    if isinstance(exc, ApiError):
        return error_json(exc.status, str(exc), exc.field)
    if isinstance(exc, HTTPException):
        return error_json(exc.status_code, str(exc.detail), None)
    if isinstance(exc, InvalidListOptionsError):
        message = str(exc)
        return error_json(400, message, message.split(":", 1)[0] if ":" in message else None)
    if isinstance(exc, UnknownJobError):
        return error_json(404, str(exc), "jobId")
    if isinstance(exc, JobNotRetryableError):
        return error_json(409, str(exc))
    if isinstance(exc, (BrokerError, StoreError)):
        return error_json(503, str(exc))
    if isinstance(exc, ValueError):
        return error_json(400, str(exc))
    if isinstance(exc, JobQueueError):
        return error_json(409, str(exc))
    logger.exception("dashboard request %s %s failed", request.method, request.url.path)
    return error_json(500, f"internal error: {type(exc).__name__}")


class _Guard:
    """Login for every request; read-only and CSRF checks for every POST."""

    def __init__(
        self, app: ASGIApp, auth: Auth | None, dashboard: Dashboard, hosts: Sequence[str] | None
    ) -> None:
        self.app = app
        self.auth = auth
        self.dashboard = dashboard
        self.hosts = None if hosts is None else {host.lower() for host in hosts}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        send = _with_headers(send)
        request = Request(scope, receive)
        if not self._host_allowed(request.url.hostname or ""):
            await error_json(403, "this Host is not served without a login")(scope, receive, send)
            return
        user = None
        if self.auth is not None:
            token = request.query_params.get("token")
            if token and request.method == "GET" and self.auth.accepts_token(token):
                back = RedirectResponse(request.url.path, status_code=303)
                back.set_cookie(TOKEN_COOKIE, token, httponly=True, samesite="strict")
                await back(scope, receive, send)
                return
            user = self.auth.identify(request)
            if user is None:
                reply = error_json(401, "log in: a token or basic auth is required")
                reply.headers.update(self.auth.challenge())
                await reply(scope, receive, send)
                return
        scope.setdefault("state", {})["who"] = who(request, user)
        if request.method not in ("GET", "HEAD", "OPTIONS"):
            problem = csrf_problem(request, self.dashboard.csrf_token)
            read_only = self.dashboard.read_only and request.url.path not in READ_POSTS
            if problem is None and read_only:
                problem = "read-only mode: actions are off"
            if problem is not None:
                logger.warning("dashboard refused %s %s from %s: %s", request.method,
                               request.url.path, scope["state"]["who"], problem)  # fmt: skip
                await error_json(403, problem)(scope, receive, send)
                return
        await self.app(scope, receive, send)

    def _host_allowed(self, host: str) -> bool:
        if self.hosts is None:
            return self.auth is not None or is_loopback(host)
        return "*" in self.hosts or host.lower() in self.hosts


#: Headers of every reply: no framing (an action cannot be clickjacked), scripts and styles
#: from this app only, the ``?token=`` URL never sent on as a referrer.
SECURITY_HEADERS = [
    (b"content-security-policy", b"default-src 'self'; frame-ancestors 'none'"),
    (b"x-frame-options", b"DENY"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
]


def _with_headers(send: Send) -> Send:
    async def sending(message: Message) -> None:
        if message["type"] == "http.response.start":
            message = {**message, "headers": [*message.get("headers", []), *SECURITY_HEADERS]}
        await send(message)

    return sending
