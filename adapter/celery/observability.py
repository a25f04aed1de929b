"""Celery's side of metrics and traces: worker up/down marks, flushes at exit, span enrichment.

- ``metrics_step``: a worker bootstep that tells the strategy's ``MetricsRecorder`` this
  process is the worker ``hostname`` (counted by ``adapter_workers_up`` while it runs) and
  removes the mark, after a last flush, when the worker stops.
- ``listen``: once per process, flushes every recorder when a prefork pool process exits
  (``worker_process_shutdown``; billiard ends its children without ``atexit``), and, when
  opentelemetry-instrumentation-celery is on, gives its publish span of each job message our
  attributes (``adapter.tracing.enrich_current``). Its span is current between its
  ``before_task_publish`` and ``after_task_publish`` handlers: handling both signals enriches
  it whichever of the two handlers was connected first.
"""

from __future__ import annotations

from typing import Any, ClassVar

from celery import bootsteps
from celery.signals import after_task_publish, before_task_publish, worker_process_shutdown

from adapter import tracing
from adapter.celery.envelope import TASK_NAME
from adapter.metrics.recorder import MetricsRecorder, flush_all


def metrics_step(recorder: MetricsRecorder) -> type[bootsteps.StartStopStep]:
    """Return a worker bootstep that marks the worker up in ``recorder`` while it runs."""

    class AdapterMetrics(bootsteps.StartStopStep):  # type: ignore[misc]
        """Says this worker is up (``adapter_workers_up``), and flushes metrics at its stop."""

        requires: ClassVar = {"celery.worker.components:Pool"}

        def start(self, worker: Any) -> None:
            recorder.worker_up(str(worker.hostname))

        def stop(self, worker: Any) -> None:
            recorder.worker_down()

        terminate = shutdown = stop

    return AdapterMetrics


def listen() -> None:
    """Connect the process-wide signal handlers (idempotent)."""
    worker_process_shutdown.connect(_pool_process_exits, weak=False, dispatch_uid=__name__)
    before_task_publish.connect(_published, weak=False, dispatch_uid=__name__)
    after_task_publish.connect(_published, weak=False, dispatch_uid=__name__)


def others_listen(signal: Any) -> bool:
    """True when ``signal`` has a receiver besides this module's (which alone does nothing:
    it enriches the span of another receiver, the Celery instrumentation)."""
    return any(lookup_key[0] != __name__ for lookup_key, _ in signal.receivers)


def _pool_process_exits(**_: Any) -> None:
    flush_all()


def _published(sender: Any = None, body: Any = None, **_: Any) -> None:
    if sender != TASK_NAME or not tracing.enabled():
        return
    try:
        wire_job = body[0][0]
        tracing.enrich_current(str(wire_job["id"]), str(wire_job["queueName"]), "send")
    except (TypeError, LookupError):  # not a job message: nothing to say about it
        return
