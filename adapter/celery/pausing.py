"""Each worker follows the stored paused flags: a paused queue's messages stay in the broker.

The gate (``adapter.celery.gate``) already keeps a paused queue's jobs from starting; without
more, each would be handed back about once a second for as long as the pause lasts. So every
worker runs a ``PauseFollower`` thread next to its consumer: every ``POLL_INTERVAL_S`` it reads
the controls (one cheap read) and stops consuming the started queues that were paused, and
consumes again those resumed (``ConsumerHandle.paused``; the operator's ``-Q``/``-X`` and
queue controls still apply). A worker that starts reads the flags before it consumes.
"""

from __future__ import annotations

import logging
import threading

from adapter.celery.consumer import ConsumerHandle
from adapter.celery.registry import ProcessRegistry
from adapter.forksafe import no_fork
from adapter.store.queues import QueueStore

logger = logging.getLogger(__name__)

#: Seconds between two reads of the paused flags in each worker.
POLL_INTERVAL_S = 0.5


class PauseFollower:
    """A thread that keeps ``handle``'s paused queues equal to the stored paused flags."""

    def __init__(
        self, queues: QueueStore, handle: ConsumerHandle, registry: ProcessRegistry
    ) -> None:
        self._queues = queues
        self._handle = handle
        self._registry = registry
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Read the flags now, then follow them in the background (again after ``stop``)."""
        self.follow_once()
        if self._thread is not None and self._thread.is_alive() and not self._stop.is_set():
            return
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._loop, args=(self._stop,), name="adapter-pauses", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        """Stop following; the consumer keeps what it consumes."""
        self._stop.set()

    def follow_once(self) -> None:
        """Stop consuming newly paused queues, consume resumed ones again."""
        try:
            with no_fork():  # a prefork pool forks its children from this very process
                found = self._queues.controls()
        except Exception as err:  # the store's errors: the gate still holds paused jobs
            logger.warning("could not read the paused queues: %s", err)
            return
        paused = frozenset(name for name, control in found.items() if control.paused)
        before = self._handle.paused
        if paused == before:
            return
        self._handle.paused = paused
        started = set(self._registry.queue_names())
        for name in sorted((paused - before) & started):
            logger.info("queue %r is paused: not consuming it", name)
            self._handle.cancel(name)
        for name in sorted((before - paused) & started):
            logger.info("queue %r is resumed: consuming it again", name)
            self._handle.add(name)

    def _loop(self, stop: threading.Event) -> None:
        while not stop.wait(POLL_INTERVAL_S):
            self.follow_once()
