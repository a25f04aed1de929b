"""OpenTelemetry's SDK for test processes: spans kept in memory, or appended to a file.

A worker subprocess cannot share the test's in-memory exporter: ``worker_app`` configures the
SDK with ``FileSpanExporter`` when TEST_SPAN_FILE is set (each pool process appends its spans
as JSON lines, written as each span ends), and the test reads them back with ``read_spans``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult


@dataclass(frozen=True)
class SpanRecord:
    """What a test checks of a finished span."""

    name: str
    kind: str
    scope: str
    trace_id: str
    span_id: str
    parent_id: str | None
    attributes: dict[str, Any]


def record_of(span: ReadableSpan) -> SpanRecord:
    """Return the record of an SDK span."""
    context, parent = span.get_span_context(), span.parent
    assert context is not None
    return SpanRecord(
        name=span.name,
        kind=span.kind.name,
        scope=span.instrumentation_scope.name if span.instrumentation_scope else "",
        trace_id=f"{context.trace_id:032x}",
        span_id=f"{context.span_id:016x}",
        parent_id=f"{parent.span_id:016x}" if parent is not None else None,
        attributes=dict(span.attributes or {}),
    )


class FileSpanExporter(SpanExporter):
    """Appends each span to a file as one JSON line."""

    def __init__(self, path: str) -> None:
        self._path = path

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        lines = "".join(json.dumps(record_of(span).__dict__) + "\n" for span in spans)
        with open(self._path, "a") as out:
            out.write(lines)
        return SpanExportResult.SUCCESS


def configure_file_tracing(path: str, *, instrument_celery: bool) -> None:
    """Turn the SDK on, writing spans to ``path``; optionally with CeleryInstrumentor too."""
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(FileSpanExporter(path)))
    trace.set_tracer_provider(provider)
    if instrument_celery:
        from opentelemetry.instrumentation.celery import CeleryInstrumentor

        CeleryInstrumentor().instrument()  # type: ignore[no-untyped-call]


def read_spans(path: Path) -> list[SpanRecord]:
    """Return the spans a worker wrote to ``path``."""
    if not path.exists():
        return []
    return [SpanRecord(**json.loads(line)) for line in path.read_text().splitlines() if line]
