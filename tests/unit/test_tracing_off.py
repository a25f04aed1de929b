"""Tracing and metrics cost nothing to import, and tracing is off without the SDK."""

from __future__ import annotations

import subprocess
import sys


def run(code: str) -> str:
    """Run ``code`` in a fresh interpreter; return its output."""
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    return done.stdout.strip()


def test_importing_the_adapter_imports_neither_opentelemetry_nor_prometheus_client() -> None:
    loaded = run(
        "import sys, adapter, adapter.tracing, adapter.metrics, adapter.metrics.recorder;"
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'opentelemetry',"
        " 'prometheus_client', 'celery', 'kombu'}))"
    )
    assert loaded == "[]"


def test_tracing_is_off_with_the_api_alone_and_on_with_an_sdk_provider() -> None:
    states = run(
        "from adapter import tracing; before = tracing.enabled();"
        "import opentelemetry.trace as t; api_only = tracing.enabled();"
        "from opentelemetry.sdk.trace import TracerProvider;"
        "t.set_tracer_provider(TracerProvider());"
        "print(before, api_only, tracing.enabled())"
    )
    assert states == "False False True"
