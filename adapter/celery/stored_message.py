"""A job message as kombu's Redis transport stores it, recast as text for the jobs of a group.

On Redis a message is the JSON text kombu's channel pushes on the queue's list: ``dumps`` of
the message ``prepare_message`` made and ``_inplace_augment_message`` completed (the body in
base64, a fresh ``delivery_tag``, the delivery info). ``add_many`` pushes many messages of one
celery queue at once (``DirectSender.push_many``); between two of them only the parts
``envelope.MessageTemplate`` recasts differ, and in the stored text these:

- the base64 body, which the task's serializer writes per job, as for every message;
- header ``id`` and, for a job that is its own root, ``root_id``; property ``correlation_id``;
- header and property ``argsrepr`` (``envelope.args_repr``);
- property ``priority`` (the broker's, per job) and property ``delivery_tag`` (kombu's uuid4).

``StoredTemplate`` encodes the first job's stored message once, with a marker in each of those
places, and fills them per job: one JSON text built by joining, instead of a Celery message, a
kombu message and an encoding of the whole of both per job. A job whose timeout differs from
the first's has other headers: it is not recast (``recasts``), the caller builds it the full
way. A template is used only once it renders its own first message exactly as kombu stored
it (``of``), body included: were kombu's stored form or its ``json`` serializer to change
(the body is written with kombu's JSON directly, without the serializer registry's set-up
per call), the full way is taken.
"""

from __future__ import annotations

import json
import re
from json.encoder import encode_basestring_ascii
from typing import Any, Final

from kombu.serialization import dumps as serialize
from kombu.utils.json import dumps as kombu_dumps

from adapter.celery.envelope import args_repr, job_args
from adapter.job import Job

#: Marks a place filled per job; control characters are in no id, queue name or header.
_MARK: Final = "\x00adapter-slot-{}\x00"
#: The places a template fills, in the stored text.
_SLOTS: Final = ("body", "id", "argsrepr", "priority", "delivery_tag")
#: A marker as ``store_dumps`` writes it (a JSON string), naming its slot.
_MARKED: Final = re.compile(r'"\\u0000adapter-slot-(\w+)\\u0000"')


class StoredTemplate:
    """The stored text of one job's message, with the places that differ per job marked."""

    def __init__(
        self, parts: list[str], slots: list[str], job: Job, embed: Any, serializer: str
    ) -> None:
        self._parts = parts  # text between the slots: len(slots) + 1 pieces
        self._slots = slots
        self._timeout = job.timeout
        self._embed = embed
        self._serializer = serializer

    @classmethod
    def of(
        cls, channel: Any, stored: dict[str, Any], job: Job, body: Any, serializer: str
    ) -> StoredTemplate | None:
        """Return the template of ``stored`` (``job``'s message as ``channel`` stores it, its
        ``body`` the message body before serializing), or None when it does not render
        ``stored`` exactly."""
        marked = json.loads(_stored_json(stored))
        headers, properties = marked["headers"], marked["properties"]
        if headers.get("root_id") == job.id:
            headers["root_id"] = _MARK.format("id")
        marked["body"] = _MARK.format("body")
        headers["id"] = properties["correlation_id"] = _MARK.format("id")
        headers["argsrepr"] = properties["argsrepr"] = _MARK.format("argsrepr")
        properties["priority"] = _MARK.format("priority")
        properties["delivery_tag"] = _MARK.format("delivery_tag")
        pieces = _MARKED.split(_stored_json(marked))
        template = cls(pieces[::2], pieces[1::2], job, body[2], serializer)
        first = template._render(
            channel,
            job,
            properties_priority=stored["properties"]["priority"],
            delivery_tag=stored["properties"]["delivery_tag"],
        )
        return template if first == _stored_json(stored) else None

    def recasts(self, job: Job) -> bool:
        """True when ``job``'s message differs from the template's only in its slots."""
        return job.timeout == self._timeout

    def stored(self, channel: Any, job: Job, priority: int) -> str:
        """Return the text ``channel`` would store for ``job``'s message (broker ``priority``)."""
        return self._render(
            channel,
            job,
            properties_priority=priority,
            delivery_tag=channel._next_delivery_tag(),
        )

    def _render(
        self,
        channel: Any,
        job: Job,
        *,
        properties_priority: int,
        delivery_tag: str,
    ) -> str:
        body: tuple[Any, ...] = (job_args(job), {}, self._embed)
        if self._serializer == "json":  # kombu's, without the registry's set-up per call
            data = _stored_json(body)
        else:
            data = serialize(body, serializer=self._serializer)[2]  # type: ignore[no-untyped-call]
        values = {
            "body": channel.encode_body(data, channel.body_encoding)[0],
            "id": job.id,
            "argsrepr": args_repr(job)["argsrepr"],
            "priority": properties_priority,
            "delivery_tag": delivery_tag,
        }
        parts = self._parts
        text = [parts[0]]
        for index, slot in enumerate(self._slots):
            text.append(_json(values[slot]))
            text.append(parts[index + 1])
        return "".join(text)


def _json(value: Any) -> str:
    """Return ``value`` as ``store_dumps`` writes it, strings and ints without its set-up."""
    kind = type(value)
    if kind is str:
        return encode_basestring_ascii(value)
    if kind is int:
        return int.__repr__(value)
    return _stored_json(value)


def _stored_json(value: Any) -> str:
    """Return ``value`` as kombu's Redis channel writes it (kombu's JSON)."""
    return str(kombu_dumps(value))  # type: ignore[no-untyped-call]
