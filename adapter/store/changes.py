"""Pushed job-change notifications: a hint that a job's state or progress may have changed.

``updates()`` (``adapter.subscribable``) waits on a ``Watch`` between two reads of its job: a
store that pushes changes wakes it as soon as a write lands; one that does not (SQLite) leaves
it to its poll interval, Vendure's way. A notification is a hint, which may say more: a
``Change`` (PostgreSQL's) gives the state the write left, and the whole job once settled. A
settled job never changes again, so the waiter takes it as read; an unsettled state only lets
it skip a read that could emit nothing (before its first poll). Otherwise it reads the job
again from the store, so a missed, late or duplicate notification changes when an update is
seen, never what it says.

- ``ChangeHub``: in-process fan-out from a job id to the watches waiting on it. The memory
  store notifies its hub directly after each write.
- ``ChangeListener``: one thread and one server connection per store per process, shared by
  every watch, that turns the server's notifications (Redis pub/sub, PostgreSQL
  LISTEN/NOTIFY; subclasses in ``store/redis`` and ``store/sql``) into hub notifications. It
  starts on the first ``watch``, waits for the server to confirm the subscription (so a watch
  taken before the first read misses nothing), reconnects after an error (then wakes every
  watch, which reads again), and starts afresh in a forked child, where the parent's thread
  does not exist.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from types import TracebackType

from adapter.forksafe import ForkSafeLock
from adapter.job import SETTLED_STATES, Job, JobState

logger = logging.getLogger(__name__)

#: Seconds the first ``watch`` waits for the listener's subscription to be confirmed.
READY_TIMEOUT_S = 2.0
#: Seconds between a listener's connection error and its next try.
RECONNECT_DELAY_S = 1.0
#: Seconds a listener thread waits for a message before it checks whether to stop.
LISTEN_TICK_S = 1.0


@dataclass(frozen=True)
class Change:
    """What a notification says of the newest write of a job: its state, the job once settled."""

    state: JobState
    #: The job as written, given only when settled (final: no later write changes it).
    settled: Job | None = None

    @property
    def is_settled(self) -> bool:
        """True when the write settled the job."""
        return self.state in SETTLED_STATES


class Watch:
    """One waiter on one job: ``wait`` returns early once the job may have changed."""

    def __init__(self, hub: ChangeHub | None, job_id: str) -> None:
        self.job_id = job_id
        self._hub = hub
        self._changed = threading.Event()
        self._change: Change | None = None
        self._wake_loop: Callable[[], object] | None = None

    def wait(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for a change; True when one was notified."""
        self._changed.wait(max(timeout, 0.0))
        return self._consume()

    async def wait_async(self, timeout: float) -> bool:
        """``wait`` for an event loop: no thread is held while waiting."""
        loop = asyncio.get_running_loop()
        woken = asyncio.Event()
        self._wake_loop = partial(loop.call_soon_threadsafe, woken.set)
        try:
            if not self._changed.is_set():  # set before _wake_loop was: seen here
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(woken.wait(), max(timeout, 0.0))
        finally:
            self._wake_loop = None
        return self._consume()

    def _consume(self) -> bool:
        notified = self._changed.is_set()
        self._changed.clear()  # the caller reads the job next: a later change wakes it again
        return notified

    def take_change(self) -> Change | None:
        """Return what the newest notification said, once; None when it said nothing more."""
        change, self._change = self._change, None
        return change

    def notify(self, change: Change | None = None) -> None:
        """Wake the waiter: its job may have changed (``change``: what the write was)."""
        self._change = change  # notifications come in commit order: the newest one wins
        self._changed.set()
        wake = self._wake_loop
        if wake is not None:
            with contextlib.suppress(RuntimeError):  # its loop is closed: nobody waits
                wake()

    def close(self) -> None:
        """Stop receiving notifications and release a waiter still blocked in ``wait``."""
        if self._hub is not None:
            self._hub.forget(self)
        self._changed.set()

    def __enter__(self) -> Watch:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()


def unnotified_watch(job_id: str) -> Watch:
    """Return a watch nothing notifies: its ``wait`` is a sleep (polling stores)."""
    return Watch(None, job_id)


class ChangeHub:
    """The watches of one process, by job id."""

    def __init__(self) -> None:
        self._lock = ForkSafeLock()
        self._watches: dict[str, set[Watch]] = {}

    def watch(self, job_id: str) -> Watch:
        """Return a new watch on ``job_id``, notified from now on."""
        made = Watch(self, job_id)
        with self._lock:
            self._watches.setdefault(job_id, set()).add(made)
        return made

    def forget(self, watch: Watch) -> None:
        """Stop notifying ``watch``."""
        with self._lock:
            waiting = self._watches.get(watch.job_id)
            if waiting is not None:
                waiting.discard(watch)
                if not waiting:
                    del self._watches[watch.job_id]

    def notify(self, job_id: str, change: Change | None = None) -> None:
        """Wake every watch on ``job_id`` (``change``: what the write was, when known)."""
        with self._lock:
            waiting = list(self._watches.get(job_id, ()))
        for watch in waiting:
            watch.notify(change)

    def notify_all(self) -> None:
        """Wake every watch (notifications may have been missed, say while reconnecting)."""
        with self._lock:
            waiting = [watch for watches in self._watches.values() for watch in watches]
        for watch in waiting:
            watch.notify()


class ChangeListener(ABC):
    """A thread of this process feeding a ``ChangeHub`` from a server's notifications."""

    def __init__(self, what: str) -> None:
        self._what = what
        self._lock = ForkSafeLock()
        self._pid = 0
        self._hub = ChangeHub()
        self._ready = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def watch(self, job_id: str) -> Watch:
        """Return a watch on ``job_id``, the listener subscribed first (started if need be)."""
        with self._lock:
            started = self._pid != os.getpid() or self._thread is None
            if started:
                self._start()
            hub, ready = self._hub, self._ready
        # Not needed for correctness (a confirmed subscription wakes every watch, which reads
        # again): waiting once lets the first stream start on the pushed path.
        if started and not ready.wait(READY_TIMEOUT_S):
            logger.warning("no change notifications from %s yet: polling meanwhile", self._what)
        return hub.watch(job_id)

    def _start(self) -> None:
        """Start this process's thread (a forked child's hub and events are its own)."""
        self._pid = os.getpid()
        self._hub = ChangeHub()
        self._ready = threading.Event()
        self._stopping = threading.Event()
        self._thread = threading.Thread(
            target=self._run, name=f"adapter-changes-{self._what}", daemon=True
        )
        self._thread.start()

    def close(self) -> None:
        """Stop this process's thread (within ``LISTEN_TICK_S``); a later ``watch`` restarts it."""
        with self._lock:
            thread, self._thread = self._thread, None
            if thread is not None and self._pid == os.getpid():
                self._stopping.set()
                self._hub.notify_all()

    def _run(self) -> None:
        stopping, hub, ready = self._stopping, self._hub, self._ready
        warned = False
        while not stopping.is_set():
            try:
                self._listen(stopping, hub, lambda: self._subscribed(hub, ready))
            except Exception as err:  # any failure: reconnect; waiters poll meanwhile
                if ready.is_set() or not warned:  # once per outage, not once per try
                    logger.warning("change notifications from %s stopped: %s", self._what, err)
                warned = True
            ready.clear()
            hub.notify_all()
            stopping.wait(RECONNECT_DELAY_S)

    @staticmethod
    def _subscribed(hub: ChangeHub, ready: threading.Event) -> None:
        ready.set()
        hub.notify_all()  # anything written before the subscription: read again

    @abstractmethod
    def _listen(
        self, stopping: threading.Event, hub: ChangeHub, subscribed: Callable[[], None]
    ) -> None:
        """Subscribe, call ``subscribed()`` once confirmed, then notify ``hub`` until stopping.

        Each job id received goes to ``hub.notify``, with its ``Change`` when the server says
        it; ``stopping`` is checked every ``LISTEN_TICK_S`` seconds. Any error ends the call;
        the thread reconnects.
        """
