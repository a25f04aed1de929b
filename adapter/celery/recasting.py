"""How a job's message is recast from another of its celery queue, for ``JobPublisher``.

Celery's message is built once per celery queue and the others recast from it
(``envelope.MessageTemplate``), on Redis down to the text Redis stores
(``stored_message.StoredTemplate``). ``Recast`` keeps both for the single adds of one queue
name, thread and process (``template_key``); ``PreparedGroup`` is one celery queue's share of
an ``add_many``. ``template_of`` says which built messages can be templates.
"""

from __future__ import annotations

import os
from typing import Any, Literal

from celery import Celery

from adapter.celery.envelope import MessageTemplate
from adapter.celery.stored_message import StoredTemplate
from adapter.job import Job


class Recast:
    """How the messages of one queue, thread and process are recast: from the last message
    built (``message``, sent with ``options``), and on Redis from its stored text (``stored``,
    made by ``DirectSender.push_one``; ``False`` when kombu's text cannot be recast, or the
    broker is not Redis)."""

    def __init__(self, message: MessageTemplate, options: dict[str, Any]) -> None:
        self.message = message
        self.options = options
        self.stored: StoredTemplate | Literal[False] | None = None


class PreparedGroup:
    """The jobs of one celery queue for ``publish_many``: the first one's message built, and
    the others' built too, or recast from it (``template``) when they are sent."""

    def __init__(
        self, jobs: list[Job], template: MessageTemplate | None, built: list[tuple[Any, Any]]
    ) -> None:
        """``built``: the messages and options of the first jobs (all when no template)."""
        self.jobs = jobs
        self.template = template
        self.first: tuple[Any, dict[str, Any]] = built[0]
        self._built = built

    def messages(self) -> list[tuple[Any, dict[str, Any]]]:
        """Return the message and options of every job."""
        template, options = self.template, self.first[1]
        if template is None:
            return self._built
        return [
            self.first,
            *(
                (template.message(job), {**options, "priority": job.priority})
                for job in self.jobs[1:]
            ),
        ]


def template_key(app: Celery, job: Job) -> tuple[str, str, int]:
    """Return the key of ``job``'s templates: its queue name, the thread's ``reply_to``, the
    pid (``origin`` names it)."""
    return job.queue_name, app.thread_oid, os.getpid()


def template_of(message: Any, job: Job) -> MessageTemplate | None:
    """Return ``message`` (``job``'s) as a template, or None when it is not one: with a
    ``task-sent`` event, an ``eta`` or ``expires`` (dated when built)."""
    headers = message.headers
    if message.sent_event is not None or headers.get("expires") or headers.get("eta"):
        return None
    return MessageTemplate(message, job)
