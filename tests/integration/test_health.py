"""GET /health of a plain ``celery worker`` (setting ``adapter_health_port``): 200 with its
queues while the broker is up, 503 with the reason while a private broker is stopped, 200 again
once it returns; no prefork pool child holds the listening socket, not even a replaced one.
"""

from __future__ import annotations

import json
import os
import signal
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.conftest import WorkerProcess
from tests.private_brokers import PrivateBroker, free_port
from tests.support import unique_queue, wait_for

pytestmark = pytest.mark.timeout(240)


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[PrivateBroker]:
    """A Redis server of this test's own, started."""
    broker = PrivateBroker("redis", tmp_path / "broker")
    broker.start()
    yield broker
    broker.stop()


@pytest.fixture
def broker_url(private_redis: PrivateBroker) -> str:
    """The private broker, for the workers (overrides conftest's)."""
    return private_redis.url


def health(port: int) -> tuple[int, dict[str, Any]] | None:
    """Return the status and JSON of GET /health on ``port``, or None when nothing answers."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=10) as answer:
            return int(answer.status), json.loads(answer.read())
    except urllib.error.HTTPError as err:
        return int(err.code), json.loads(err.read())
    except OSError:
        return None


def wait_health(
    port: int, code: int, what: str, condition: Callable[[dict[str, Any]], bool] = bool
) -> dict[str, Any]:
    """Wait until /health answers ``code`` with JSON meeting ``condition``; return the JSON."""

    def probe() -> dict[str, Any] | None:
        found = health(port)
        if found is None or found[0] != code or not condition(found[1]):
            return None
        return found[1]

    return wait_for(probe, f"/health to answer {code}: {what}", timeout=90)


def listening_inode(port: int) -> str:
    """Return the inode of the socket listening on 127.0.0.1:``port`` (from /proc/net/tcp)."""
    local = f"0100007F:{port:04X}"
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if fields[1] == local and fields[3] == "0A":
            return fields[9]
    raise AssertionError(f"nothing listens on 127.0.0.1:{port}")


def holds(pid: int, inode: str) -> bool:
    """Tell whether process ``pid`` has the socket ``inode`` among its open files."""
    target = f"socket:[{inode}]"
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            if os.readlink(fd) == target:
                return True
        except OSError:
            continue
    return False


def children(pid: int) -> set[int]:
    """Return the pids of the child processes of ``pid``."""
    text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    return {int(child) for child in text.split()}


def test_health_follows_the_broker_and_no_pool_child_holds_its_socket(
    private_redis: PrivateBroker, make_worker: Callable[..., WorkerProcess]
) -> None:
    queue, port = unique_queue("health"), free_port()
    worker = make_worker(f"{queue}=echo", "-P", "prefork", "-c", "2", ADAPTER_HEALTH_PORT=str(port))
    try:
        worker.start()
        assert worker.popen is not None

        def consumed(answer: dict[str, Any]) -> bool:
            return queue in answer["queues"]

        up = wait_health(port, 200, f"{queue} consumed", consumed)
        inode = listening_inode(port)
        first_children = wait_for(lambda: children(worker.popen.pid), "the pool's children")  # type: ignore[union-attr]
        assert holds(worker.popen.pid, inode)
        assert not [child for child in first_children if holds(child, inode)]
        os.kill(min(first_children), signal.SIGKILL)  # the pool forks a replacement
        replaced = wait_for(
            lambda: (found := children(worker.popen.pid)) - first_children and found,  # type: ignore[union-attr]
            "a replacement pool child",
        )
        # A child closes the socket as it starts (an after-fork hook), a moment after fork().
        wait_for(
            lambda: not [child for child in replaced if holds(child, inode)],
            "the replacement child to close the health socket",
        )

        private_redis.stop()
        down = wait_health(port, 503, "broker stopped")
        private_redis.start()
        back = wait_health(port, 200, f"broker back, {queue} consumed", consumed)
    finally:
        worker.stop()
    assert up["status"] == back["status"] == "ok"
    assert f"jobs.{queue}" in up["celery_queues"]
    assert down["status"] == "unavailable", down
    assert "not running" in down["reason"] or "does not answer" in down["reason"], down
