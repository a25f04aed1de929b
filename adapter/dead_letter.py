"""Dead letters: messages on the adapter's queues that are not jobs, kept with the reason.

A worker never runs such a message (pickle or any content type but JSON, a body that is not
JSON, JSON that is not a job, an unknown task name). It records a ``DeadLetter`` in the job
store, where ``jobqueue dead-letters`` and ``JobStore.dead_letters`` show it, and rejects the
message; on RabbitMQ the message itself also goes to the ``adapter.dead-letter`` queue.
Pure data: nothing here talks to a broker or a store (``adapter.celery.envelope.dead_letter``
builds one from a message).
"""

from __future__ import annotations

import json
import uuid
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from adapter.job import utcnow

#: Longest message body kept in a dead letter, in characters; the rest is cut off.
MAX_BODY_CHARS = 64 * 1024


class DeadLetter(BaseModel):
    """One message that was not run, and why."""

    model_config = ConfigDict(frozen=True)

    id: str = Field(default_factory=lambda: str(uuid.uuid4()))
    received_at: datetime = Field(default_factory=utcnow)
    #: The broker routing key it came with (the celery queue, ``jobs.<queue name>``).
    queue: str
    #: The ``task`` and ``id`` headers, when the message had them.
    task_name: str | None = None
    task_id: str | None = None
    content_type: str | None = None
    reason: str
    #: The body as text (bytes that are not UTF-8 escaped), at most ``MAX_BODY_CHARS``.
    body: str = ""
    headers: dict[str, Any] = Field(default_factory=dict)


def body_text(body: Any) -> str:
    """Return a message body as text for a dead letter, never failing, cut to size."""
    if isinstance(body, bytes | bytearray | memoryview):
        text = bytes(body).decode("utf-8", errors="backslashreplace")
    elif isinstance(body, str):
        text = body
    else:
        text = json.dumps(body, default=repr)
    return text[:MAX_BODY_CHARS]


def plain_headers(headers: Any) -> dict[str, Any]:
    """Return message headers as JSON-safe values (whatever a hostile sender put there)."""
    if not isinstance(headers, dict):
        return {}
    plain: dict[str, Any] = json.loads(json.dumps(headers, default=repr))
    return plain
