"""OpenTelemetry traces of jobs: a PRODUCER span per add, a CONSUMER span per attempt.

Off, at the cost of a dict lookup, unless the OpenTelemetry SDK is configured: tracing is on
when ``opentelemetry.trace`` is already imported and its global tracer provider is a real one
(the API alone gives a proxy or no-op provider). This module never imports OpenTelemetry
itself; install the ``otel`` extra (``opentelemetry-api``) and configure the SDK to turn it on.

- **Add**: ``producer_span`` wraps the publish of each job's message (``send <celery queue>``,
  kind PRODUCER) and injects its context into the message headers (W3C ``traceparent``), so
  Celery's retries, which copy a request's headers, carry it too.
- **Attempt**: ``consumer_span`` wraps each run of ``adapter.run_job`` (``process <celery
  queue>``, kind CONSUMER), its parent extracted from the message headers: every attempt of a
  job is a child of its add's span, in the same trace.
- **Beside opentelemetry-instrumentation-celery**: when its ``CeleryInstrumentor`` is on, it
  already opens a PRODUCER span per publish and a CONSUMER span per task and propagates the
  context; then no span of ours is opened, and its spans get our attributes instead
  (``enrich_current``, from the publish signals and the task), so nothing is duplicated.

Attributes follow the messaging semantic conventions: ``messaging.system`` (``celery``),
``messaging.destination.name`` (the celery queue), ``messaging.operation.type`` (``send`` or
``process``), ``messaging.operation.name``, ``messaging.message.id`` (the job id), plus
``adapter.queue_name``.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Iterator, MutableMapping
from contextlib import contextmanager
from typing import Any

#: Name of the tracer of the adapter's spans.
TRACER_NAME = "adapter"
#: Instrumentation scope of opentelemetry-instrumentation-celery's spans.
CELERY_INSTRUMENTATION = "opentelemetry.instrumentation.celery"
#: ``messaging.system`` of every span.
MESSAGING_SYSTEM = "celery"


def enabled() -> bool:
    """True when an OpenTelemetry SDK tracer provider is configured in this process."""
    trace = sys.modules.get("opentelemetry.trace")
    if trace is None:
        return False
    provider = trace.get_tracer_provider()
    return not isinstance(provider, trace.ProxyTracerProvider | trace.NoOpTracerProvider)


def celery_instrumented() -> bool:
    """True when opentelemetry-instrumentation-celery's instrumentor is on."""
    module = sys.modules.get(CELERY_INSTRUMENTATION)
    if module is None:
        return False
    return bool(module.CeleryInstrumentor().is_instrumented_by_opentelemetry)


def attributes(job_id: str, queue_name: str, operation: str) -> dict[str, str]:
    """Return the semantic-convention attributes of a span of ``operation`` on a job."""
    return {
        "messaging.system": MESSAGING_SYSTEM,
        "messaging.destination.name": f"jobs.{queue_name}",
        "messaging.operation.type": operation,
        "messaging.operation.name": operation,
        "messaging.message.id": job_id,
        "adapter.queue_name": queue_name,
    }


@contextmanager
def producer_span(
    job_id: str, queue_name: str, headers: MutableMapping[str, Any]
) -> Iterator[None]:
    """Trace the publish of one job's message and inject the context into ``headers``."""
    if not enabled() or celery_instrumented():
        yield
        return
    from opentelemetry import propagate, trace

    tracer = trace.get_tracer(TRACER_NAME)
    with tracer.start_as_current_span(
        f"send jobs.{queue_name}",
        kind=trace.SpanKind.PRODUCER,
        attributes=attributes(job_id, queue_name, "send"),
    ):
        propagate.inject(headers)
        yield


@contextmanager
def consumer_span(job_id: str, queue_name: str | None, request: Any) -> Iterator[None]:
    """Trace one attempt, as a child of the context in the request's message headers.

    ``request`` is Celery's task request, whose attributes include the message headers.
    """
    if not enabled():
        yield
        return
    if enrich_current(job_id, queue_name or "", "process"):
        yield
        return
    from opentelemetry import propagate, trace

    parent = propagate.extract(request, getter=_attribute_getter())
    tracer = trace.get_tracer(TRACER_NAME)
    with tracer.start_as_current_span(
        f"process jobs.{queue_name}",
        context=parent,
        kind=trace.SpanKind.CONSUMER,
        attributes=attributes(job_id, queue_name or "", "process"),
    ):
        yield


def enrich_current(job_id: str, queue_name: str, operation: str) -> bool:
    """Add our attributes to the current span if opentelemetry-instrumentation-celery made it
    for ``operation`` (``send``: its PRODUCER span, ``process``: its CONSUMER span).

    Returns whether it did.
    """
    if not enabled():
        return False
    from opentelemetry import trace

    span = trace.get_current_span()
    scope = getattr(span, "instrumentation_scope", None)
    kind = trace.SpanKind.PRODUCER if operation == "send" else trace.SpanKind.CONSUMER
    if (
        not span.is_recording()
        or getattr(scope, "name", None) != CELERY_INSTRUMENTATION
        or getattr(span, "kind", None) != kind  # a publish from a task: not the task's span
    ):
        return False
    span.set_attributes(attributes(job_id, queue_name, operation))
    return True


@functools.cache
def _attribute_getter() -> Any:
    """Return a Getter reading propagation fields from a Celery request's attributes."""
    from opentelemetry.propagators.textmap import Getter

    class AttributeGetter(Getter[Any]):
        def get(self, carrier: Any, key: str) -> list[str] | None:
            value = getattr(carrier, key, None)
            return [value] if isinstance(value, str) else None

        def keys(self, carrier: Any) -> list[str]:
            return []

    return AttributeGetter()
