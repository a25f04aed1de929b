"""The dashboard and HTTP admin API: an ASGI app over an InspectableJobQueueStrategy.

    from adapter.web import create_app
    app = create_app(strategy, auth=Auth(token="..."), read_only=False)

Needs the ``dashboard`` extra (Starlette, uvicorn). ``jobqueue dashboard`` serves it; it mounts
into any ASGI app (FastAPI, Starlette, Django's ASGI router). Modules: ``app`` (factory, login,
CSRF, errors), ``api`` (the page, the reads), ``operations`` (the POSTs), ``parsing``,
``actions`` (the action table), ``jobs`` (job JSON, redaction, text search), ``overview``
(queues), ``openapi``, ``auth``, ``serve``, ``static/`` (the page).
"""

from adapter.web.app import create_app
from adapter.web.auth import Auth, check_bind

__all__ = ["Auth", "check_bind", "create_app"]
