"""``jobqueue dashboard``: safe by default (loopback, or a login), options checked."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from celery import Celery

import adapter.cli
import adapter.web.serve
from adapter import CeleryJobQueueStrategy
from adapter.cli import main
from adapter.store.memory import MemoryJobStore
from adapter.web import check_bind


@pytest.fixture(autouse=True)
def memory_strategy(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every command of the test runs on a memory broker and store."""

    def load_strategy(app: str | None) -> CeleryJobQueueStrategy:
        celery_app = Celery(f"dash-{uuid.uuid4().hex[:8]}")
        celery_app.conf.broker_url = "memory://"
        return CeleryJobQueueStrategy(celery_app, store=MemoryJobStore(), embedded_worker=False)

    monkeypatch.setattr(adapter.cli, "load_strategy", load_strategy)
    monkeypatch.delenv("ADAPTER_DASHBOARD_TOKEN", raising=False)


@pytest.fixture
def served(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """What ``serve`` was called with, instead of serving (after the real bind check)."""
    calls: list[dict[str, Any]] = []

    def serve(app: Any, host: str, port: int, auth: Any) -> None:
        check_bind(host, auth)
        calls.append({"app": app, "host": host, "port": port, "auth": auth})

    monkeypatch.setattr(adapter.web.serve, "serve", serve)
    return calls


def test_binding_every_address_without_a_login_is_refused(
    capsys: pytest.CaptureFixture[str], served: list[dict[str, Any]]
) -> None:
    assert main(["dashboard", "--host", "0.0.0.0"]) == 1
    assert "refusing to serve the dashboard on 0.0.0.0 without a login" in capsys.readouterr().err
    assert served == []


def test_by_default_it_listens_on_loopback_only(served: list[dict[str, Any]]) -> None:
    assert main(["dashboard"]) == 0
    assert (served[0]["host"], served[0]["auth"]) == ("127.0.0.1", None)


def test_a_token_from_the_environment_allows_another_address(
    monkeypatch: pytest.MonkeyPatch, served: list[dict[str, Any]]
) -> None:
    monkeypatch.setenv("ADAPTER_DASHBOARD_TOKEN", "s3cret")
    assert main(["dashboard", "--host", "0.0.0.0", "--read-only"]) == 0
    assert served[0]["auth"].token == "s3cret"
    assert served[0]["app"].state.dashboard.read_only is True


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--token", "t", "--basic-auth", "u:p"], "give a token or basic auth, not both"),
        (["--basic-auth", "nopassword"], "basic auth must be USER:PASSWORD"),
        (["--interval", "0"], "poll interval must be more than 0 s"),
    ],
)
def test_bad_options_are_one_line_errors(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str], served: list[Any]
) -> None:
    assert main(["dashboard", *argv]) == 1
    assert message in capsys.readouterr().err
    assert served == []
