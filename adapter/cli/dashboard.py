"""``jobqueue dashboard``: serve the dashboard and HTTP admin API for the strategy's store."""

from __future__ import annotations

import argparse
import os
from typing import Any, TypeVar

from adapter.celery import CeleryJobQueueStrategy
from adapter.celery.app import shown_broker_url
from adapter.celery.workers import WorkerInspector
from adapter.errors import ConfigurationError
from adapter.settings import (
    DASHBOARD_HOST,
    DASHBOARD_PORT,
    DASHBOARD_REDACT_KEYS,
    DASHBOARD_TOKEN,
    Setting,
)

T = TypeVar("T")


def add_parser(sub: argparse._SubParsersAction[Any], common: argparse.ArgumentParser) -> None:
    """Add the ``dashboard`` command to ``sub``."""
    dashboard = sub.add_parser(
        "dashboard", parents=[common], help="the dashboard and HTTP admin API in a browser"
    )
    host, port = DASHBOARD_HOST, DASHBOARD_PORT
    dashboard.add_argument("--host", help=f"default {host.default} ({host.env[0]})")
    dashboard.add_argument("--port", help=f"default {port.default} ({port.env[0]})")
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
    host, port = _option(DASHBOARD_HOST, args.host), _option(DASHBOARD_PORT, args.port)
    token = _option(DASHBOARD_TOKEN, args.token)
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
    serve(app, host, port, auth)
    return 0


def _option(setting: Setting[T], given: str | None) -> T:
    """Return the command-line value of ``setting``, else its environment variable's, checked."""
    if given:
        return setting.read({setting.key: given})
    return setting.read_environment(os.environ)
