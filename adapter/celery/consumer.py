"""A consumer bootstep that makes a worker consume the started queues its operator selects.

The step is installed on the app by the strategy, so it runs in any worker of that app:
``celery -A module worker`` (any pool) and the embedded worker alike. On every consumer start,
including the restarts that follow a lost broker connection, it re-applies the registry's
queues that the worker's ``-Q``/``-X`` flags and queue controls select
(``adapter.celery.selection``), and stops consuming any job queue that is not started here or
not selected (Celery itself consumes ``-Q jobs.x``): such a job waits in the broker. Many
queues are consumed in batches, one event-loop callback each (``adapter.celery.consuming``).
Later ``start``/``stop`` calls reach the running consumer through ``call_soon``, the
consumer's own thread, and wait until the change is in effect. ``celery control add_consumer`` and
``cancel_consumer`` of a job queue go through the step too (``ConsumerHandle.install``), so
they change the selection, and ``celery inspect active_queues`` (``jobqueue queues``) shows
what is really consumed. It also makes the worker's ``revoke`` command cancel jobs
(``adapter.celery.controls``).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any, ClassVar

from celery import bootsteps
from celery.signals import celeryd_init

from adapter.celery.consuming import consume_queues
from adapter.celery.controls import RevokeCanceller, install_revoke_hook
from adapter.celery.poison import DeadLetterRecorder, install_hooks
from adapter.celery.preflight import check_settings
from adapter.celery.registry import ProcessRegistry
from adapter.celery.routing import celery_queue, queue_name_of
from adapter.celery.selection import QueueSelection

logger = logging.getLogger(__name__)

#: How long ``start``/``stop`` wait for the consumer thread to apply a change, in seconds.
APPLY_TIMEOUT_S = 15.0
#: Longest the consumer's event loop sleeps before it sees a queue change or a stop request,
#: in seconds (without a timer due, kombu's hub may otherwise wait up to 10 s).
WAKE_INTERVAL_S = 0.25
#: Delay before the next batch of queues is consumed, in seconds: just enough for the event
#: loop to poll once (delivering messages of the queues consumed so far) without sleeping.
NEXT_BATCH_DELAY_S = 0.001


class ConsumerHandle:
    """The running consumer of this process's worker, once there is one."""

    def __init__(
        self,
        registry: ProcessRegistry,
        *,
        on_bind: Callable[[], None] = lambda: None,
        on_unbind: Callable[[], None] = lambda: None,
    ) -> None:
        """Follow ``registry``; ``on_bind``/``on_unbind`` run as a consumer starts and stops."""
        self._registry = registry
        self._on_bind = on_bind
        self._on_unbind = on_unbind
        self._consumer: Any = None
        self._thread_id: int | None = None
        self._wake_timer: Any = None
        self._warned = False
        self.selection = QueueSelection()
        #: Queues paused in the store, not consumed (``adapter.celery.pausing`` keeps it).
        self.paused: frozenset[str] = frozenset()
        self._app: Any = None
        self.ready = threading.Event()

    @property
    def bound(self) -> bool:
        """True while a worker's consumer runs in this process."""
        return self._consumer is not None

    @property
    def consumer(self) -> Any:
        """The running consumer, or None while there is none (read it once: it may go)."""
        return self._consumer

    @property
    def pool_is_prefork(self) -> bool:
        """True when jobs run in forked children that already exist."""
        pool = getattr(self._consumer, "pool", None)
        return pool is not None and type(pool).__module__.endswith("prefork")

    def follow_worker_flags(self, app: Any) -> None:
        """Take the selection from the ``-Q``/``-X`` of each ``app.Worker`` made from now on.

        Celery keeps neither flag once it has applied them: ``celeryd_init`` is where a
        worker's options can still be read. A worker made otherwise (the embedded one)
        consumes every started queue. The receiver is held weakly: it goes with this handle.
        """
        self._app = app
        celeryd_init.connect(self._on_worker_init)

    def _on_worker_init(self, instance: Any = None, options: Any = None, **_: Any) -> None:
        if instance is not None and getattr(instance, "app", None) is self._app:
            found = options or {}
            self.selection = QueueSelection.from_worker_options(
                found.get("queues"), found.get("exclude_queues")
            )

    def install(self, consumer: Any) -> None:
        """Route ``add_consumer``/``cancel_consumer`` of job queues through this handle."""
        consumer.add_task_queue = lambda queue, *args, **kwargs: self._control_add(
            consumer, queue, *args, **kwargs
        )
        consumer.cancel_task_queue = lambda queue: self._control_cancel(consumer, queue)

    def _control_add(self, consumer: Any, queue: str, *args: Any, **kwargs: Any) -> None:
        """``control add_consumer``: a job queue is selected, and consumed if started here."""
        name = queue_name_of(queue)
        if name is None:
            type(consumer).add_task_queue(consumer, queue, *args, **kwargs)
        elif self._registry.token_for(name):
            self.selection.include(name)
            _add_queue(consumer, name)
        else:
            self.selection.include(name)
            logger.warning(
                "add_consumer %s: queue %r is not started in this worker; its jobs wait for a "
                "worker that starts it (consumed here once it is started)",
                queue,
                name,
            )

    def _control_cancel(self, consumer: Any, queue: str) -> None:
        """``control cancel_consumer``: a job queue is deselected until added again."""
        name = queue_name_of(queue)
        if name is not None:
            self.selection.exclude(name)
        type(consumer).cancel_task_queue(consumer, queue)

    def bind(self, consumer: Any) -> None:
        """Adopt ``consumer`` (called in its thread) and consume the selected started queues."""
        if not self._warned:
            self._warned = True
            for finding in check_settings(consumer.app):
                logger.warning("preflight: %s: %s", finding.setting, finding.message)
        self._consumer = consumer
        self._thread_id = threading.get_ident()

        # Consume only once the event loop runs: the task callback is registered by then, and a
        # message delivered earlier (RabbitMQ delivers at once) would find no callback. The
        # queues are read then too: one started meanwhile (at worker_ready) is kept.
        def consume_registered() -> None:
            queue_names = [q for q in self._registry.queue_names() if self._selects(q)]
            wanted = set(queue_names)
            for queue in list(consumer.task_consumer.queues):
                name = queue_name_of(queue.name)
                if name is not None and name not in wanted:
                    type(consumer).cancel_task_queue(consumer, queue.name)
            consume_queues(consumer, queue_names, _next_batch(consumer), self._wanted)

        consumer.call_soon(consume_registered)
        hub = getattr(consumer, "hub", None)
        if hub is not None:
            self._wake_timer = hub.call_repeatedly(WAKE_INTERVAL_S, _wake)
        self._on_bind()
        self.ready.set()

    def _wanted(self, queue_name: str) -> bool:
        """True while ``queue_name`` is started here and selected by the worker."""
        return bool(self._registry.token_for(queue_name)) and self._selects(queue_name)

    def _selects(self, queue_name: str) -> bool:
        """True when the operator selects ``queue_name`` and it is not paused."""
        return self.selection.selects(queue_name) and queue_name not in self.paused

    def unbind(self) -> None:
        """Forget the consumer when it stops."""
        self._on_unbind()
        self._consumer = None
        if self._wake_timer is not None:
            self._wake_timer.cancel()
            self._wake_timer = None
        self.ready.clear()

    def add(self, queue_name: str) -> None:
        """Make the running consumer take jobs of ``queue_name``, if the worker selects it."""
        if self._selects(queue_name):
            self._apply(lambda consumer: _add_queue(consumer, queue_name))

    def cancel(self, queue_name: str) -> None:
        """Make the running consumer stop taking jobs of ``queue_name``."""
        self._apply(
            lambda consumer: type(consumer).cancel_task_queue(consumer, celery_queue(queue_name))
        )

    def _apply(self, change: Callable[[Any], None]) -> None:
        consumer = self._consumer
        if consumer is None:
            return
        done = threading.Event()

        def run() -> None:
            try:
                change(consumer)
            finally:
                done.set()

        consumer.call_soon(run)
        if threading.get_ident() == self._thread_id:
            return  # called from the consumer's own thread: it applies once this call returns
        if not done.wait(APPLY_TIMEOUT_S):
            logger.warning(
                "the worker's consumer did not apply a queue change within %ss", APPLY_TIMEOUT_S
            )


def _next_batch(consumer: Any) -> Callable[[Callable[[], None]], Any]:
    """Return how the consumer's thread runs the next batch of queues to consume.

    A timer due almost at once: the event loop polls for messages between two batches, but
    does not sleep (``call_soon`` from the loop's own thread would wait for its next timer).
    Without an event loop, the consumer's pending operations (run one after the other).
    """
    hub = getattr(consumer, "hub", None)
    if hub is None:
        return consumer.call_soon  # type: ignore[no-any-return]
    return lambda run: hub.call_later(NEXT_BATCH_DELAY_S, run)


def _wake() -> None:
    """Nothing: a due timer is what ends the event loop's wait."""


def _add_queue(consumer: Any, queue_name: str) -> None:
    name = celery_queue(queue_name)
    type(consumer).add_task_queue(
        consumer, name, exchange=name, exchange_type="direct", routing_key=name
    )


def queue_control_step(
    handle: ConsumerHandle, recorder: DeadLetterRecorder, canceller: RevokeCanceller
) -> type[bootsteps.StartStopStep]:
    """Return a consumer bootstep class bound to ``handle``.

    ``recorder`` takes poison, ``canceller`` the jobs of revoked ids.
    """

    class AdapterQueueControl(bootsteps.StartStopStep):  # type: ignore[misc]
        """Keeps the consumer's queues equal to the adapter's started queues."""

        requires: ClassVar = {"celery.worker.consumer.tasks:Tasks"}

        def __init__(self, parent: Any, **kwargs: Any) -> None:
            super().__init__(parent, **kwargs)
            install_hooks(parent, recorder)  # before the consumer builds its message handlers
            handle.install(parent)

        def start(self, parent: Any) -> None:
            install_revoke_hook(parent, canceller)  # every step exists by now
            handle.bind(parent)

        def stop(self, parent: Any) -> None:
            handle.unbind()

        def shutdown(self, parent: Any) -> None:
            handle.unbind()

    return AdapterQueueControl
