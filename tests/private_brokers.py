"""Broker servers of a test's own, on free ports, for tests that stop and start a broker.

The shared servers on the standard ports are never stopped or restarted; a test that needs a
broker to go away starts one of these. Data lives in the test's folder and survives a
restart (Redis with an append-only file; RabbitMQ keeps durable queues and persistent
messages), as a production broker would. When the server's program is missing the test skips
locally and fails under CI, like every integration test.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.servers import in_ci

RABBITMQ_SERVER = "/usr/lib/rabbitmq/bin/rabbitmq-server"
#: Seconds a private broker gets to accept connections.
START_TIMEOUT_S = {"redis": 15.0, "rabbitmq": 90.0}


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class PrivateBroker:
    """A Redis or RabbitMQ server of one test: ``start``, ``stop``, ``start`` again."""

    kind: str
    folder: Path
    port: int = field(default_factory=free_port)
    dist_port: int = field(default_factory=free_port)
    popen: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        if self.kind == "redis":
            return f"redis://127.0.0.1:{self.port}/0"
        return f"amqp://guest:guest@127.0.0.1:{self.port}//"

    def start(self) -> None:
        """Start the server and wait until it accepts connections."""
        command, env = self._command()
        self.folder.mkdir(parents=True, exist_ok=True)
        with (self.folder / f"{self.kind}.log").open("ab") as log:
            self.popen = subprocess.Popen(
                command, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        deadline = time.monotonic() + START_TIMEOUT_S[self.kind]
        while time.monotonic() < deadline:
            if self.popen.poll() is not None:
                raise AssertionError(f"private {self.kind} exited; see {self.folder}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                time.sleep(0.2)
        raise AssertionError(f"private {self.kind} did not start; see {self.folder}")

    def stop(self) -> None:
        """Stop the server (SIGTERM to its process group) and wait until it is gone."""
        if self.popen is None or self.popen.poll() is not None:
            return
        os.killpg(self.popen.pid, signal.SIGTERM)
        try:
            self.popen.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(self.popen.pid, signal.SIGKILL)
            self.popen.wait(10)

    def _command(self) -> tuple[list[str], dict[str, str]]:
        if self.kind == "redis":
            program = shutil.which("redis-server")
            _require(program, "redis-server")
            return [
                str(program),
                "--bind", "127.0.0.1",
                "--port", str(self.port),
                "--dir", str(self.folder),
                "--appendonly", "yes",
                "--appendfsync", "always",
                "--save", "",
            ], dict(os.environ)  # fmt: skip
        _require(RABBITMQ_SERVER if os.path.exists(RABBITMQ_SERVER) else None, "rabbitmq-server")
        config = self.folder / "rabbitmq.conf"
        plugins = self.folder / "enabled_plugins"
        self.folder.mkdir(parents=True, exist_ok=True)
        config.write_text(f"listeners.tcp.1 = 127.0.0.1:{self.port}\nloopback_users = none\n")
        plugins.write_text("[].\n")
        env = {
            **os.environ,
            "RABBITMQ_NODENAME": f"adapter-test-{self.port}@localhost",
            "RABBITMQ_NODE_PORT": str(self.port),
            "RABBITMQ_DIST_PORT": str(self.dist_port),
            "RABBITMQ_MNESIA_BASE": str(self.folder / "mnesia"),
            "RABBITMQ_LOG_BASE": str(self.folder / "log"),
            "RABBITMQ_CONFIG_FILE": str(config),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(plugins),
            "RABBITMQ_PID_FILE": str(self.folder / "pid"),
        }
        return [RABBITMQ_SERVER], env


def _require(program: str | None, name: str) -> None:
    if program is None:
        reason = f"{name} is not installed; run scripts/test"
        if in_ci():
            pytest.fail(f"{reason} [CI is set, so this is a failure]", pytrace=False)
        pytest.skip(reason)
