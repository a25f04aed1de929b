"""Which process function runs each queue in this OS process, and how a prefork child finds it.

``start``/``stop`` edit this registry; the worker's consumer follows it. A worker parent writes
a *process token* into each task request before handing it to the pool (``token_for``): empty
when this process no longer runs the queue (the job is handed back to the broker), else the
slot of the process function plus, when it has one, its import path. A prefork child forked
before the slot existed resolves the import path instead (``resolve``).
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable
from typing import Any

from adapter.errors import ProcessNotImportableError
from adapter.forksafe import ForkSafeLock

Process = Callable[..., Any]
#: Separates slot and import path inside a process token.
_SEP = "|"


def import_path(process: Process) -> str | None:
    """Return ``"module:qualname"`` if importing it gives back ``process`` itself, else None."""
    module_name = getattr(process, "__module__", None)
    qualname = getattr(process, "__qualname__", None)
    if not module_name or not qualname or "<" in qualname:
        return None
    try:
        found: Any = importlib.import_module(module_name)
        for part in qualname.split("."):
            found = getattr(found, part)
    except (ImportError, AttributeError):
        return None
    return f"{module_name}:{qualname}" if found is process else None


def _import(path: str) -> Process:
    module_name, qualname = path.split(":", 1)
    found: Any = importlib.import_module(module_name)
    for part in qualname.split("."):
        found = getattr(found, part)
    return found  # type: ignore[no-any-return]


class ProcessRegistry:
    """Queue name -> the process functions started for it, in start order."""

    def __init__(self) -> None:
        self._lock = ForkSafeLock()
        self._slots: list[Process] = []
        self._paths: dict[int, str] = {}
        self._active: dict[str, list[int]] = {}
        self._owner_pid = os.getpid()

    def add(self, queue_name: str, process: Process, *, require_import_path: bool) -> bool:
        """Record the pair; True if ``queue_name`` had no process before."""
        with self._lock:
            slot = self._slot_of(process)
            path = self._paths.get(slot) if slot is not None else import_path(process)
            if require_import_path and path is None:
                raise ProcessNotImportableError(
                    f"cannot start queue {queue_name!r} with {process!r}: this worker's prefork "
                    "children are already running and can only reach a module-level function "
                    "by its import path. Define the process at module level, or start the queue "
                    "when the module is imported (before the pool forks)."
                )
            if slot is None:
                slot = len(self._slots)
                self._slots.append(process)
                if path is not None:
                    self._paths[slot] = path
            self._owner_pid = os.getpid()
            slots = self._active.setdefault(queue_name, [])
            if slot in slots:
                return False
            slots.append(slot)
            return len(slots) == 1

    def remove(self, queue_name: str, process: Process) -> bool:
        """Forget the pair; True if ``queue_name`` has no process left."""
        with self._lock:
            slot = self._slot_of(process)
            slots = self._active.get(queue_name, [])
            if slot not in slots:
                return False
            slots.remove(slot)
            if slots:
                return False
            del self._active[queue_name]
            return True

    def queue_names(self) -> list[str]:
        """Return the queue names this process runs."""
        with self._lock:
            return list(self._active)

    def token_for(self, queue_name: str) -> str:
        """Return the process token for a job of ``queue_name`` ("" when not run here)."""
        with self._lock:
            slots = self._active.get(queue_name)
            if not slots:
                return ""
            slot = slots[0]
            return f"{slot}{_SEP}{self._paths.get(slot, '')}"

    def resolve(self, queue_name: str, token: str | None) -> Process | None:
        """Return the process to run for ``queue_name``, or None to hand the job back."""
        if token is None or os.getpid() == self._owner_pid:
            with self._lock:
                slots = self._active.get(queue_name)
                return self._slots[slots[0]] if slots else None
        if not token:
            return None
        slot_text, path = token.split(_SEP, 1)
        slot = int(slot_text)
        with self._lock:
            if slot < len(self._slots) and self._paths.get(slot, path) == path:
                return self._slots[slot]
        if not path:
            raise ProcessNotImportableError(
                f"queue {queue_name!r}: this worker child has no process in slot {slot}"
            )
        return _import(path)

    def _slot_of(self, process: Process) -> int | None:
        for slot, known in enumerate(self._slots):
            if known == process:
                return slot
        return None
