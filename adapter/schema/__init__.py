"""The job message as a JSON Schema, for producers that are not this library.

``job-message.schema.json`` (draft 2020-12) is the contract ``adapter.celery.envelope``
builds and reads: the task headers, the content type, the routing key and the body
``[[job], {}, embed]`` with Vendure's camelCase job. It ships inside the package; a Node
service or a shell script validates its messages against the same file. The ranges it states
are ``adapter.job``'s (a unit test keeps the two equal).
"""

from __future__ import annotations

import json
from importlib import resources
from typing import Any

#: File name of the job message schema inside this package.
JOB_MESSAGE_SCHEMA = "job-message.schema.json"


def job_message_schema() -> dict[str, Any]:
    """Return the JSON Schema of a job message, read from the installed package."""
    text = resources.files(__name__).joinpath(JOB_MESSAGE_SCHEMA).read_text(encoding="utf-8")
    schema: dict[str, Any] = json.loads(text)
    return schema
