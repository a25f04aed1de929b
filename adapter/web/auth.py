"""Who may use the dashboard and its API, and the checks every action passes.

- ``Auth``: a bearer token (``Authorization: Bearer T``; a browser opens ``/?token=T`` once and
  keeps it in an HttpOnly, SameSite=Strict cookie) or HTTP basic auth; ``None`` means no login,
  allowed only on a loopback address (``check_bind``).
- CSRF: every POST carries the app's CSRF token in the ``X-CSRF-Token`` header (the page holds it
  in a meta tag; ``GET /api/meta`` returns it to an authenticated client), and a browser's
  ``Origin`` must be the dashboard's own. A cross-site page can send neither.
- ``who``: the name an action is logged with: the basic-auth user or "token", and the client
  address.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import ipaddress
from dataclasses import dataclass

from starlette.requests import HTTPConnection, Request

from adapter.errors import ConfigurationError

#: Cookie that keeps a browser's token after ``/?token=...``.
TOKEN_COOKIE = "jobqueue_token"
#: Header every POST must carry the CSRF token in.
CSRF_HEADER = "x-csrf-token"
#: Host names that mean this machine only.
LOOPBACK_NAMES = frozenset({"localhost", "ip6-localhost"})


@dataclass(frozen=True)
class Auth:
    """A login: a bearer token, or a basic-auth user and password (not both)."""

    token: str | None = None
    user: str | None = None
    password: str | None = None

    @classmethod
    def from_options(cls, token: str | None, basic_auth: str | None) -> Auth | None:
        """Return the Auth of ``--token`` / ``--basic-auth USER:PASSWORD``, or None for neither."""
        if token and basic_auth:
            raise ConfigurationError("give a token or basic auth, not both")
        if token:
            return cls(token=token)
        if basic_auth:
            user, colon, password = basic_auth.partition(":")
            if not (user and colon and password):
                raise ConfigurationError("basic auth must be USER:PASSWORD, both non-empty")
            return cls(user=user, password=password)
        return None

    def identify(self, conn: HTTPConnection) -> str | None:
        """Return who ``conn`` authenticates as, or None when it does not."""
        if self.token is not None:
            given = _bearer(conn) or conn.cookies.get(TOKEN_COOKIE) or ""
            return "token" if self.accepts_token(given) else None
        user, password = _basic(conn)
        if _same(user, self.user or "") & _same(password, self.password or ""):
            return user
        return None

    def accepts_token(self, given: str) -> bool:
        """True when this is a token login and ``given`` is its token."""
        return self.token is not None and _same(given, self.token)

    def challenge(self) -> dict[str, str]:
        """Return the headers of a 401 reply (a browser asks for basic auth itself)."""
        if self.token is not None:
            return {"WWW-Authenticate": 'Bearer realm="jobqueue"'}
        return {"WWW-Authenticate": 'Basic realm="jobqueue", charset="UTF-8"'}


def check_bind(host: str, auth: Auth | None) -> None:
    """Refuse to listen on an address other machines reach unless a login is required."""
    if auth is None and not is_loopback(host):
        raise ConfigurationError(
            f"refusing to serve the dashboard on {host} without a login: give --token or "
            "--basic-auth, or bind 127.0.0.1"
        )


def is_loopback(host: str) -> bool:
    """True when ``host`` is a loopback address or name."""
    if host.lower() in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def who(conn: HTTPConnection, user: str | None) -> str:
    """Return how an action's log line names its author: user and client address."""
    client = conn.client.host if conn.client else "unknown"
    return f"{user}@{client}" if user else client


def csrf_problem(request: Request, csrf_token: str) -> str | None:
    """Return why a POST fails the CSRF checks, or None when it passes."""
    if not _same(request.headers.get(CSRF_HEADER, ""), csrf_token):
        return f"missing or wrong {CSRF_HEADER} header (the page's CSRF token)"
    origin = request.headers.get("origin")
    if origin is not None and origin != _own_origin(request):
        return f"cross-origin request from {origin[:100]!r}"
    if request.headers.get("sec-fetch-site", "same-origin") not in ("same-origin", "none"):
        return "cross-site request"
    return None


def _own_origin(request: Request) -> str:
    host = request.headers.get("host", "")
    return f"{request.url.scheme}://{host}"


def _same(given: str, expected: str) -> bool:
    return hmac.compare_digest(given.encode(), expected.encode())


def _bearer(conn: HTTPConnection) -> str | None:
    scheme, _, value = conn.headers.get("authorization", "").partition(" ")
    return value.strip() if scheme.lower() == "bearer" else None


def _basic(conn: HTTPConnection) -> tuple[str, str]:
    scheme, _, value = conn.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "basic":
        return "", ""
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        return "", ""
    user, _, password = decoded.partition(":")
    return user, password
