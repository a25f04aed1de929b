"""Serve the dashboard with uvicorn, after refusing an unsafe bind (``auth.check_bind``)."""

from __future__ import annotations

import logging

from starlette.applications import Starlette

from adapter.web.auth import Auth, check_bind


def serve(app: Starlette, host: str, port: int, auth: Auth | None) -> None:
    """Serve ``app`` on ``host:port`` until interrupted; refuse a non-loopback host sans login."""
    check_bind(host, auth)
    import uvicorn

    # Actions are logged at INFO (who and what): shown unless logging is configured otherwise.
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )

    uvicorn.run(app, host=host, port=port, log_level="info", access_log=False)
