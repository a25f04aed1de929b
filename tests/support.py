"""Helpers shared by the tests: waiting for observable outcomes, unique names, broker cleanup."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")

#: Longest wait for a job outcome; generous because the machines are shared and noisy.
WAIT_TIMEOUT_S = 60.0


def wait_for(
    probe: Callable[[], T | None], what: str, timeout: float = WAIT_TIMEOUT_S, every: float = 0.05
) -> T:
    """Poll ``probe`` until it returns something truthy and return it; fail naming ``what``."""
    deadline = time.monotonic() + timeout
    last: T | None = None
    while time.monotonic() < deadline:
        last = probe()
        if last:
            return last
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}; last saw {last!r}")


def unique_queue(label: str) -> str:
    """Return a queue name no other test (or test run) uses."""
    return f"t-{label}-{uuid.uuid4().hex[:10]}"
