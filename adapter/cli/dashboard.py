"""``jobqueue dashboard``: serve the dashboard and HTTP admin API for the strategy's store."""

from __future__ import annotations

import argparse
import os
from typing import Any

from adapter.celery import CeleryJobQueueStrategy
from adapter.celery.app import shown_broker_url
from adapter.celery.workers import WorkerInspector
from adapter.errors import ConfigurationError
from adapter.settings import DASHBOARD_REDACT_KEYS, DASHBOARD_TOKEN


def add_parser(sub: argparse._SubParsersAction[Any], common: argparse.ArgumentParser) -> None:
    """Add the ``dashboard`` command to ``sub``."""
    from adapter.web.serve import DEFAULT_HOST, DEFAULT_PORT

    dashboard = sub.add_parser(
        "dashboard", parents=[common], help="the dashboard and HTTP admin API in a browser"
    )
    dashboard.add_argument("--host", default=DEFAULT_HOST, help=f"default {DEFAULT_HOST}")
    dashboard.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"default {DEFAULT_PORT}")
    dashboard.add_argument(
        "--token", help=f"require this bearer token (or {DASHBOARD_TOKEN.env[0]})"
    )
    dashboard.add_argument("--basic-auth", metavar="USER:PASSWORD", help="require basic auth")
    dashboard.add_argument("--read-only", action="store_true", help="no actions")
    dashboard.add_argument(
        "--redact", action="append", default=[], help="a data key never shown (repeatable)"
    )
    dashboard.add_argument("--interval", type=float, default=2.0, help="page refresh, seconds")
    dashboard.set_defaults(run=run)


def run(args: argparse.Namespace, strategy: CeleryJobQueueStrategy, out: object) -> int:
    """Serve until interrupted."""
    try:
        from adapter.web import Auth, create_app
        from adapter.web.serve import serve
    except ImportError as err:
        raise ConfigurationError(
            f"the dashboard needs the 'dashboard' extra (pip install 'adapter[dashboard]'): {err}"
        ) from err
    token = args.token or DASHBOARD_TOKEN.read_environment(os.environ)
    auth = Auth.from_options(token or None, args.basic_auth)
    redact = [*DASHBOARD_REDACT_KEYS.read_environment(os.environ), *args.redact]
    app = create_app(
        strategy,
        auth=auth,
        read_only=args.read_only,
        workers=WorkerInspector(strategy.app),
        redact_keys=redact,
        poll_interval_s=args.interval,
        shown_urls={"broker": shown_broker_url(strategy.app), "store": strategy.store.url},
    )
    serve(app, args.host, args.port, auth)
    return 0
