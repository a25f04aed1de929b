"""Call a process function, plain or ``async def``, the same way in every pool.

Coroutines run on one event loop per OS process (a daemon thread), never a new loop per job,
so clients bound to a loop can be reused across jobs. A forked child gets a loop of its own.
"""

from __future__ import annotations

import asyncio
import inspect
import os
import threading
from collections.abc import Awaitable, Callable
from typing import Any

from adapter.forksafe import ForkSafeLock
from adapter.job import Job

_lock = ForkSafeLock()
_loop: asyncio.AbstractEventLoop | None = None
_loop_pid = 0


def call_process(process: Callable[[Job], Any], job: Job) -> Any:
    """Run ``process(job)`` to completion and return its result."""
    outcome = process(job)
    if inspect.isawaitable(outcome):
        return _run_on_process_loop(outcome)
    return outcome


def _run_on_process_loop(awaitable: Awaitable[Any]) -> Any:
    async def wrapper() -> Any:
        return await awaitable

    return asyncio.run_coroutine_threadsafe(wrapper(), process_loop()).result()


def process_loop() -> asyncio.AbstractEventLoop:
    """Return this OS process's background event loop, starting it on first use."""
    global _loop, _loop_pid
    with _lock:
        if _loop is None or _loop_pid != os.getpid():
            loop = asyncio.new_event_loop()
            thread = threading.Thread(
                target=loop.run_forever, name="adapter-process-loop", daemon=True
            )
            thread.start()
            _loop, _loop_pid = loop, os.getpid()
        return _loop
