"""``jobqueue dashboard``: safe by default (loopback, or a login), options checked."""

from __future__ import annotations

import argparse
import builtins
import subprocess
import sys
import uuid
from typing import Any

import pytest
from celery import Celery

import adapter.cli
import adapter.web.serve
from adapter import CeleryJobQueueStrategy
from adapter.cli import main
from adapter.errors import ConfigurationError
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
    for name in ("TOKEN", "HOST", "PORT", "REDACT_KEYS"):
        monkeypatch.delenv(f"ADAPTER_DASHBOARD_{name}", raising=False)


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
        (["--port", "70000"], "adapter_dashboard_port must be"),
    ],
)
def test_bad_options_are_one_line_errors(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str], served: list[Any]
) -> None:
    assert main(["dashboard", *argv]) == 1
    assert message in capsys.readouterr().err
    assert served == []


def test_host_and_port_come_from_the_environment_unless_given(
    monkeypatch: pytest.MonkeyPatch, served: list[dict[str, Any]]
) -> None:
    monkeypatch.setenv("ADAPTER_DASHBOARD_PORT", "9100")
    monkeypatch.setenv("ADAPTER_DASHBOARD_HOST", "::1")
    assert main(["dashboard"]) == 0
    assert main(["dashboard", "--port", "9200"]) == 0
    assert [(call["host"], call["port"]) for call in served] == [("::1", 9100), ("::1", 9200)]


def test_without_the_dashboard_extra_only_the_dashboard_command_fails() -> None:
    script = (
        "import sys; sys.modules['starlette'] = None; sys.modules['uvicorn'] = None\n"
        "from adapter.cli import main\n"
        "main(['--help'])\n"
    )
    help_run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert help_run.returncode == 0 and "dashboard" in help_run.stdout, help_run.stderr
    from adapter.cli import dashboard

    with pytest.raises(ConfigurationError, match=r"needs the 'dashboard' extra"):
        real_import = builtins.__import__

        def no_starlette(name: str, *args: Any, **kwargs: Any) -> Any:
            if name.startswith("adapter.web"):
                raise ImportError("No module named 'starlette'")
            return real_import(name, *args, **kwargs)

        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(builtins, "__import__", no_starlette)
            dashboard.run(argparse.Namespace(), None, None)  # type: ignore[arg-type]
