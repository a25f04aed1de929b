"""Writing ``basic.publish`` frames on a py-amqp channel, with less work per message.

Design note. py-amqp encodes each message's content header in pure Python, entry by entry
(``amqp.serialization.dumps``: Celery's ~20-entry header table, then the properties), and
writes each message with one ``sendall``. Between two job messages of one queue most table
entries are the same (``lang``, ``task``, ``origin``, ``timelimit``...), so ``FrameWriter``
keeps, per header name, the last value and its encoded bytes, and re-encodes only the
entries whose value changed (the task id, ``argsrepr``...). The bytes are py-amqp's, in
py-amqp's order (the table keeps the dict's order; a test compares them byte for byte with
``frame_writer``'s): method frame, content header frame, body frames split at
``frame_max - 8`` as py-amqp splits them. ``write`` sends the frames of several messages in
one ``sendall`` (``add_many``), holding py-amqp's own frame lock so that no other thread's
frame (a heartbeat, another publish) lands inside them, and counts the write in
``bytes_sent`` as py-amqp does.

``applies`` says when this is the same as ``channel.basic_publish``: a py-amqp channel whose
publishes are not confirmed (with publisher confirms on, each publish waits for its ack:
py-amqp's path is kept), on a connection that writes through py-amqp's own ``frame_writer``
(whose lock this module can find). Before writing, as ``basic_publish`` does, a connection
that announced ``connection.blocked`` reads what the broker sent (a ``connection.blocked``
notice); a closed connection raises ``RecoverableConnectionError``, a write timeout too.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Sequence
from struct import pack
from typing import Any, Final, NamedTuple

from amqp import Channel as AmqpChannel
from amqp import spec
from amqp.basic_message import Message
from amqp.exceptions import RecoverableConnectionError
from amqp.method_framing import frame_writer
from amqp.serialization import dumps

#: The name of the lock in the closure of py-amqp's ``frame_writer``.
_LOCK_NAME: Final = "buffer_lock"
#: Most method frames kept (one per channel, exchange, routing key and flags) before starting over.
MAX_METHOD_FRAMES: Final = 1024
_FRAME_END: Final = b"\xce"
_PUBLISH_SIGNATURE: Final = pack(">HH", *spec.Basic.Publish)
_CONTENT_HEADER: Final = 2
_CONTENT_BODY: Final = 3
#: Value types whose encoding is kept, each with whether its values are compared by ``repr``
#: (a container: ``repr`` tells 1, 1.0, True and "1" apart inside it) or by ``==`` (a scalar
#: of that exact type).
_KEPT_KINDS: Final[dict[type, bool]] = {
    **dict.fromkeys((str, bytes, int, float, bool, type(None)), False),
    **dict.fromkeys((list, tuple, dict), True),
}
#: (name, type code, flag word, flag bit) of each basic property, in py-amqp's order.
_PROPERTY_FLAGS: Final = tuple(
    (name, kind, index // 15, 1 << (15 - index % 15))
    for index, (name, kind) in enumerate(Message.PROPERTIES)
)


class Publish(NamedTuple):
    """One message to publish and the arguments of its ``basic.publish``."""

    message: Message
    exchange: str
    routing_key: str
    mandatory: bool
    immediate: bool


def applies(channel: Any) -> bool:
    """True when ``FrameWriter.write`` sends what ``channel.basic_publish`` would (see module)."""
    if not isinstance(channel, AmqpChannel):
        return False
    connection = channel.connection
    if connection is None or getattr(connection, "confirm_publish", True):
        return False
    publish = getattr(channel.basic_publish, "__func__", None)
    return publish is AmqpChannel._basic_publish and _frame_lock(connection) is not None


def _frame_lock(connection: Any) -> threading.Lock | None:
    """Return the lock py-amqp's ``frame_writer`` of ``connection`` holds, or None."""
    if connection.frame_writer_cls is not frame_writer:
        return None
    write_frame = connection._frame_writer
    code = getattr(write_frame, "__code__", None)
    if code is None or _LOCK_NAME not in code.co_freevars:
        return None
    lock: threading.Lock = write_frame.__closure__[code.co_freevars.index(_LOCK_NAME)].cell_contents
    return lock


class FrameWriter:
    """Encodes and writes ``basic.publish`` frames, reusing the encoding of what repeats."""

    def __init__(self) -> None:
        self._entries: dict[Any, tuple[type, Any, bytes]] = {}  # name -> (type, value, bytes)
        self._methods: dict[tuple[Any, ...], bytes] = {}

    def write(self, channel: Any, publishes: Sequence[Publish]) -> None:
        """Send ``publishes`` on ``channel`` (``applies`` said yes) in one write.

        Raises as ``basic_publish`` raises; a failed write leaves none of them known sent.
        """
        connection = channel.connection
        if not connection:
            raise RecoverableConnectionError("basic_publish: connection closed")
        if connection.client_properties.get("capabilities", {}).get("connection.blocked"):
            with contextlib.suppress(TimeoutError):  # as basic_publish: a blocked notice first
                connection.drain_events(timeout=0)
        chunk_size = connection.frame_max - 8
        parts: list[bytes] = []
        for publish in publishes:
            self._frames(parts, channel.channel_id, publish, chunk_size)
        data = b"".join(parts)
        lock = _frame_lock(connection)
        if lock is None:
            raise RecoverableConnectionError("basic_publish: connection closed")
        try:
            with lock:
                connection.transport.write(data)
                connection.bytes_sent += 1
        except TimeoutError as err:  # as basic_publish: the socket is dead
            raise RecoverableConnectionError("basic_publish: timed out") from err

    def frames(self, channel_id: int, publish: Publish, frame_max: int) -> bytes:
        """Return the frames of one ``basic.publish`` of ``publish``, as py-amqp writes them."""
        parts: list[bytes] = []
        self._frames(parts, channel_id, publish, frame_max - 8)
        return b"".join(parts)

    def _frames(self, parts: list[bytes], channel_id: int, publish: Publish, chunk: int) -> None:
        message = publish.message
        body = message.body
        if isinstance(body, str):  # as py-amqp: the encoding becomes a property
            body = body.encode(message.properties.setdefault("content_encoding", "utf-8"))
        header = pack(">HHQ", spec.Basic.CLASS_ID, 0, len(body)) + self.properties(
            message.properties
        )
        parts += (
            self._method_frame(channel_id, publish),
            pack(">BHI", _CONTENT_HEADER, channel_id, len(header)),
            header,
            _FRAME_END,
        )
        for start in range(0, len(body), chunk):
            piece = body[start : start + chunk]
            parts += (pack(">BHI", _CONTENT_BODY, channel_id, len(piece)), piece, _FRAME_END)

    def _method_frame(self, channel_id: int, publish: Publish) -> bytes:
        key = (channel_id, *publish[1:])
        frame = self._methods.get(key)
        if frame is None:
            arguments = (0, publish.exchange, publish.routing_key, *publish[3:])
            payload = _PUBLISH_SIGNATURE + dumps("Bssbb", arguments)
            frame = pack(">BHI", 1, channel_id, len(payload)) + payload + _FRAME_END
            if len(self._methods) >= MAX_METHOD_FRAMES:
                self._methods.clear()
            self._methods[key] = frame
        return frame

    def properties(self, properties: dict[str, Any]) -> bytes:
        """Return the property flags and list of a message, as ``_serialize_properties``."""
        words, values, get = [0], [], properties.get
        for name, kind, word, bit in _PROPERTY_FLAGS:
            value = get(name)
            if value is None:
                continue
            while len(words) <= word:  # as py-amqp: a flag word more only when one is set
                words.append(0)
            words[word] |= bit
            if kind == "F":
                values.append(self.table(value or {}))
            elif kind == "s":
                text = value or ""
                if isinstance(text, str):
                    text = text.encode("utf-8", "surrogatepass")
                values.append(pack("B", len(text)) + bytes(text))
            elif kind == "o":
                values.append(pack("B", value))
            else:
                values.append(bytes(dumps(kind, [value])))
        return pack(f">{len(words)}H", *words) + b"".join(values)

    def table(self, table: dict[Any, Any]) -> bytes:
        """Return ``table`` as an AMQP field table, as py-amqp encodes it."""
        entries = self._entries
        parts = []
        for name, value in table.items():
            kind = type(value)
            by_repr = _KEPT_KINDS.get(kind)
            same = repr(value) if by_repr else value
            known = entries.get(name)
            if known is not None and known[0] is kind and known[1] == same:
                parts.append(known[2])
                continue
            if kind is str and type(name) is str:  # the common changing entry: text
                key, text = (
                    name.encode("utf-8", "surrogatepass"),
                    value.encode("utf-8", "surrogatepass"),
                )
                encoded = pack("B", len(key)) + key + b"S" + pack(">I", len(text)) + text
            else:  # whatever py-amqp makes of it, its errors included
                encoded = dumps("F", [{name: value}])[4:]
            if by_repr is not None:
                entries[name] = (kind, same, encoded)
            parts.append(encoded)
        data = b"".join(parts)
        return pack(">I", len(data)) + data
