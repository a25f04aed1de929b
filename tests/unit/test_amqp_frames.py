"""The frames ``amqp_frames.FrameWriter`` writes are, byte for byte, those py-amqp writes."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from amqp import spec
from amqp.basic_message import Message
from amqp.method_framing import frame_handler, frame_writer
from amqp.serialization import dumps

from adapter.celery.amqp_frames import FrameWriter, Publish

CHANNEL_ID = 3


class _Wire:
    """What py-amqp's ``frame_writer`` needs of a connection and its transport."""

    def __init__(self, frame_max: int) -> None:
        self.frame_max = frame_max
        self.bytes_sent = 0
        self.bytes_recv = 0
        self.written = bytearray()

    def write(self, data: Any) -> None:
        self.written += bytes(data)


def by_py_amqp(publish: Publish, frame_max: int) -> bytes:
    """Return the bytes py-amqp's ``basic_publish`` of ``publish`` writes."""
    wire = _Wire(frame_max)
    write_frame = frame_writer(wire, wire)
    arguments = dumps("Bssbb", (0, *publish[1:]))
    write_frame(1, CHANNEL_ID, spec.Basic.Publish, arguments, publish.message)
    return bytes(wire.written)


def decoded(data: bytes) -> Iterator[Message]:
    """Yield the messages py-amqp reads from ``data``, a stream of frames."""
    received: list[Message] = []
    on_frame = frame_handler(
        _Wire(0),
        lambda _c, _m, _a, message: received.append(message),
        content_methods=frozenset([spec.Basic.Publish]),  # as a broker reads them
    )
    offset = 0
    while offset < len(data):
        frame_type, channel, size = (
            int(data[offset]),
            int.from_bytes(data[offset + 1 : offset + 3]),
            int.from_bytes(data[offset + 3 : offset + 7]),
        )
        on_frame((frame_type, channel, data[offset + 7 : offset + 7 + size]))
        assert data[offset + 7 + size] == 0xCE
        offset += 8 + size
    yield from received


def celery_headers(task_id: str, **changed: Any) -> dict[str, Any]:
    """Headers shaped as Celery's protocol-2 message's, with ``changed`` entries."""
    return {
        "lang": "py",
        "task": "adapter.run_job",
        "id": task_id,
        "shadow": None,
        "eta": None,
        "expires": None,
        "group": None,
        "group_index": None,
        "retries": 0,
        "timelimit": [None, None],
        "root_id": task_id,
        "parent_id": None,
        "argsrepr": f"[job {task_id} on 'émails']",
        "kwargsrepr": "{}",
        "origin": "gen1@host",
        "ignore_result": False,
        "stamped_headers": None,
        "stamps": {},
        "adapter_queue": "émails",
        **changed,
    }


def message(
    task_id: str, body: str | bytes = '[[{"data": "ünïcødé ✓"}], {}, {}]', **props: Any
) -> Message:
    headers = props.pop("application_headers", None) or celery_headers(task_id)
    properties = {
        "content_type": "application/json",
        "content_encoding": "utf-8",
        "delivery_mode": 2,
        "correlation_id": task_id,
        "reply_to": "0b1c-reply",
        **props,
    }
    return Message(body, application_headers=headers, **properties)


CASES = {
    "celery message": lambda: message("id-1"),
    "priority": lambda: message("id-2", priority=9),
    "unicode bytes body": lambda: message("id-3", body="ž" * 100),
    "body larger than frame_max": lambda: message("id-4", body="x" * 10_000 + "é" * 5_000),
    "exactly one frame of body": lambda: message("id-5", body=b"y" * (4096 - 8)),
    "empty body": lambda: message("id-6", body=b""),
    "no headers": lambda: Message(b"{}", content_type="application/json"),
    "every property": lambda: message(
        "id-7",
        priority=0,
        expiration="60000",
        message_id="m-1",
        timestamp=1_700_000_000,
        type="t",
        user_id="guest",
        app_id="shop",
        cluster_id="c",
    ),
    "custom headers": lambda: message(
        "id-8",
        application_headers=celery_headers(
            "id-8",
            adapter_timeout=2.5,
            retries=3,
            big=2**40,
            negative=-(2**40),
            flag=True,
            raw=b"\x00\xff",
            nested={"a": [1, 2.0, "three", None, {"deep": True}]},
            when=datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),
            amount=Decimal("12.345"),
            timelimit=[30, 25.5],
        ),
    ),
}


@pytest.mark.parametrize("frame_max", [4096, 131072])
@pytest.mark.parametrize("case", CASES)
def test_frames_are_the_bytes_py_amqp_writes(case: str, frame_max: int) -> None:
    writer = FrameWriter()
    for _ in range(2):  # encoded, then from what the writer kept
        publish = Publish(CASES[case](), "", "jobs.émails", False, False)
        expected = by_py_amqp(Publish(CASES[case](), "", "jobs.émails", False, False), frame_max)
        assert writer.frames(CHANNEL_ID, publish, frame_max) == expected


def test_frames_decode_to_the_message_sent() -> None:
    sent = CASES["body larger than frame_max"]()
    data = FrameWriter().frames(CHANNEL_ID, Publish(sent, "", "jobs.q", True, False), 4096)
    [received] = decoded(data)
    assert received.body == sent.body.encode()
    assert received.properties == sent.properties
    assert received.frame_method == spec.Basic.Publish


@pytest.mark.parametrize(
    "values",
    [
        [1, True, 1.0, "1", b"1", [1], "[1]", (1,), None, 1],
        [[None, None], [None, 0], [None, None], {"a": 1}, {"a": True}, {"a": 1}],
        [0, False, 0.0, "", None, 0],
    ],
)
def test_a_header_whose_value_changes_type_is_encoded_anew(values: list[Any]) -> None:
    writer = FrameWriter()
    for number, value in enumerate(values):
        sent = message(f"id-{number}", application_headers=celery_headers("x", changing=value))
        expected = by_py_amqp(Publish(sent, "", "q", False, False), 131072)
        assert writer.frames(CHANNEL_ID, Publish(sent, "", "q", False, False), 131072) == expected


def test_a_header_py_amqp_refuses_is_refused() -> None:
    sent = message("id-9", application_headers={"bad": object()})
    with pytest.raises(Exception) as by_writer:
        FrameWriter().frames(CHANNEL_ID, Publish(sent, "", "q", False, False), 131072)
    with pytest.raises(Exception) as by_amqp:
        by_py_amqp(Publish(sent, "", "q", False, False), 131072)
    assert type(by_writer.value) is type(by_amqp.value)


def test_frames_written_from_many_threads_keep_their_order() -> None:
    writer = FrameWriter()
    results: list[bool] = []

    def encode(thread: int) -> None:
        for number in range(200):
            sent = message(f"id-{thread}-{number}")
            expected = by_py_amqp(
                Publish(message(f"id-{thread}-{number}"), "", "q", False, False), 131072
            )
            results.append(
                writer.frames(CHANNEL_ID, Publish(sent, "", "q", False, False), 131072) == expected
            )

    threads = [threading.Thread(target=encode, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == [True] * 800
