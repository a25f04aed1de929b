"""Threads and fork: locks a forked child gets back unlocked, and work no fork may cut.

A prefork worker's parent process runs a thread of its own (the reaper,
``adapter.celery.reaper``) that uses the job store while the pool forks new children. Two
things go wrong without care:

- a child forked while a lock was held inherits it held, by a thread that does not exist in
  the child, and waits for it for ever. Every ``ForkSafeLock`` is replaced by a fresh,
  unlocked one in each forked child, before any code of the child runs;
- SQLite keeps per-process lock state in memory; a child forked in the middle of a parent's
  transaction believes the database locked for ever ("database is locked"). Work done inside
  ``no_fork()`` never overlaps a fork: ``fork()`` waits until it is over.
"""

from __future__ import annotations

import os
import threading
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from types import TracebackType


class ForkSafeLock:
    """A ``threading.Lock`` for ``with`` blocks, fresh and unlocked in every forked child."""

    __slots__ = ("__weakref__", "_lock")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        _every_lock.add(self)

    def __enter__(self) -> None:
        self._lock.acquire()

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._lock.release()


_every_lock: weakref.WeakSet[ForkSafeLock] = weakref.WeakSet()


_fork_guard = threading.RLock()


@contextmanager
def no_fork() -> Iterator[None]:
    """Run the block with no ``fork()`` of this process in the middle of it.

    Blocks may nest in one thread. Take no other lock inside one: a thread holding that lock
    while it waits here would wait for ever (the store's pending adds are written before).
    """
    with _fork_guard:
        yield


def _renew_after_fork() -> None:
    global _fork_guard
    _fork_guard = threading.RLock()
    for lock in list(_every_lock):
        lock._lock = threading.Lock()


os.register_at_fork(
    before=lambda: _fork_guard.acquire(),
    after_in_parent=lambda: _fork_guard.release(),
    after_in_child=_renew_after_fork,
)
