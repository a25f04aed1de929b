"""Factories for test data: build what a test needs, override only what it is about."""

from __future__ import annotations

import uuid
from typing import Any

from adapter.job import Job


def make_job(**overrides: Any) -> Job:
    """Return a pending job with a fresh id on a test queue; keyword arguments override fields."""
    fields: dict[str, Any] = {
        "id": uuid.uuid4().hex,
        "queue_name": "test-queue",
        "data": {"greeting": "hello"},
    }
    fields.update(overrides)
    return Job(**fields)
