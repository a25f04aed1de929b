"""OpenTelemetry traces on a real prefork worker: one PRODUCER span per add, one CONSUMER span
per attempt, all in the add's trace; beside opentelemetry-instrumentation-celery, its spans
get our attributes and no span of ours is added.

The test process keeps its spans in the SDK's in-memory exporter; the worker writes its spans
to a file (``tests.integration.span_file``). A job that fails once and is retried once gives
two attempts.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from opentelemetry import trace
from opentelemetry.instrumentation.celery import CeleryInstrumentor
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.util._once import Once

from adapter import CeleryJobQueueStrategy, Job
from adapter.tracing import CELERY_INSTRUMENTATION, TRACER_NAME
from tests.integration.conftest import SERVER_BROKERS, WorkerProcess
from tests.integration.span_file import SpanRecord, read_spans, record_of
from tests.support import unique_queue, wait_for, wait_settled

pytestmark = pytest.mark.timeout(180)


@pytest.fixture
def spans_here() -> Iterator[InMemorySpanExporter]:
    """The SDK on in this process for one test, its spans kept in memory; off again after."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    yield exporter
    provider.shutdown()
    # The API sets its global provider once per process: put back the unset state (as
    # opentelemetry-test-utils' reset_trace_globals does), so later tests trace nothing.
    trace._TRACER_PROVIDER = None
    trace._TRACER_PROVIDER_SET_ONCE = Once()


def spans_of(records: list[SpanRecord], job_id: str, kind: str) -> list[SpanRecord]:
    """The spans of ``kind`` whose message is the job's."""
    return [
        span
        for span in records
        if span.kind == kind and span.attributes.get("messaging.message.id") == job_id
    ]


def has_our_attributes(span: SpanRecord, queue: str, operation: str) -> bool:
    """True when ``span`` carries the messaging attributes the adapter sets."""
    wanted = {
        "messaging.system": "celery",
        "messaging.destination.name": f"jobs.{queue}",
        "messaging.operation.type": operation,
    }
    return all(span.attributes.get(key) == value for key, value in wanted.items())


@pytest.mark.parametrize("instrumented", [False, True], ids=["ours", "celery-instrumentation"])
@SERVER_BROKERS
def test_each_add_and_each_attempt_is_one_span_in_one_trace(
    producer: CeleryJobQueueStrategy,
    make_worker: Callable[..., WorkerProcess],
    spans_here: InMemorySpanExporter,
    tmp_path: Path,
    instrumented: bool,
) -> None:
    queue = unique_queue("traces")
    span_file = tmp_path / "worker-spans.jsonl"
    env = {"TEST_SPAN_FILE": str(span_file), **({"TEST_OTEL_CELERY": "1"} if instrumented else {})}
    worker = make_worker(f"{queue}=mixed", "-P", "prefork", "-c", "2", **env)
    worker.start()
    instrumentor = CeleryInstrumentor()  # type: ignore[no-untyped-call]
    if instrumented:
        instrumentor.instrument()
    try:
        job = producer.add(Job(queue_name=queue, data={"fail": True}, retries=1))
    finally:
        if instrumented:
            instrumentor.uninstrument()
    assert wait_settled(producer, job).attempts == 2
    job_id = job.id or ""

    here = [record_of(span) for span in spans_here.get_finished_spans()]
    [sent] = spans_of(here, job_id, "PRODUCER")

    def both_attempts() -> list[SpanRecord] | None:
        found = spans_of(read_spans(span_file), job_id, "CONSUMER")
        return found if len(found) >= 2 else None

    attempts = wait_for(both_attempts, "a consumer span per attempt in the worker's span file")
    assert len(attempts) == 2
    assert has_our_attributes(sent, queue, "send")
    assert all(has_our_attributes(span, queue, "process") for span in attempts)
    assert {span.trace_id for span in attempts} == {sent.trace_id}
    assert attempts[0].parent_id == sent.span_id
    expected_scope = CELERY_INSTRUMENTATION if instrumented else TRACER_NAME
    assert {span.scope for span in [sent, *attempts]} == {expected_scope}
    if instrumented:  # its spans only: none of ours beside them
        assert all(span.scope != TRACER_NAME for span in [*here, *read_spans(span_file)])
    else:  # Celery's retry carries the add's context: every attempt is its child
        assert {span.parent_id for span in attempts} == {sent.span_id}
