"""Redis: the messages of one BRPOP turn taken and recorded as unacknowledged in one round trip.

kombu's Redis transport takes one message per BRPOP, then records it in its ``unacked`` hash
and ``unacked_index`` (HSET + ZADD) in a second round trip, before the consumer sees it. A
worker whose prefetch allows several messages (a batch queue holds up to a batch per pool
process, ``adapter.celery.batching``) so pays two round trips per message in its main
process. Here, once BRPOP has returned a message, one Lua script (``TAKE``) records it and
pops up to the prefetch's room more of the same queue (highest priority first, as kombu's
``_get`` reads a queue), recording each in the same two keys, with the value and score kombu
writes. The messages are then delivered in order, as if each had come from its own BRPOP.

What stays as kombu has it: a message is in ``unacked`` before the consumer sees it, and a
worker killed at any point leaves it either in its queue or in ``unacked`` (the script pops
and records atomically; kombu itself leaves a popped message in neither until its second
round trip); acknowledgements, rejections and restores are kombu's. What differs: the extra
messages of a turn come from the queue BRPOP served, so a turn may take several messages of
one queue before the next turn serves another (bounded by the prefetch). A queue consumed
without acknowledgements (``no_ack``), a message kombu could not read, and a channel with a
``global_keyprefix`` (kombu prefixes only one key of a script call) keep kombu's own path.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from kombu.utils.json import loads
from redis.commands.core import Script

#: Most messages one turn takes beyond BRPOP's when the prefetch sets no bound.
MAX_TAKE = 100

#: Lua. KEYS: the ``unacked`` hash, the ``unacked_index`` sorted set, then the queue's lists,
#: highest priority first. ARGV: the score (seconds since the epoch, as kombu writes it), how
#: many more messages to pop, the message BRPOP returned. Records that one (the first answer
#: is 1 if it could, 0 for a message without kombu's delivery tag and info: kombu's own
#: ``append`` then records it), then pops up to that many more, recording each, and returns
#: them after the first answer, in order. A popped message it cannot record goes back where
#: it was, and the turn ends there.
TAKE = """
local function record(item)
  local ok, message = pcall(cjson.decode, item)
  if not ok or type(message) ~= 'table' or type(message.properties) ~= 'table' then
    return false
  end
  local tag, info = message.properties.delivery_tag, message.properties.delivery_info
  if type(tag) ~= 'string' or type(info) ~= 'table' then
    return false
  end
  local stored = '[' .. item .. ',' .. cjson.encode(info.exchange) .. ','
    .. cjson.encode(info.routing_key) .. ']'
  redis.call('HSET', KEYS[1], tag, stored)
  redis.call('ZADD', KEYS[2], ARGV[1], tag)
  return true
end

local answer = {0}
if record(ARGV[3]) then
  answer[1] = 1
end
local wanted = tonumber(ARGV[2])
for i = 3, #KEYS do
  while #answer - 1 < wanted do
    local item = redis.call('RPOP', KEYS[i])
    if not item then
      break
    end
    if not record(item) then
      redis.call('RPUSH', KEYS[i], item)
      return answer
    end
    answer[#answer + 1] = item
  end
end
return answer
"""


class Taker:
    """Takes and delivers a BRPOP turn's messages for one kombu Redis channel (module docstring).

    The channel's QoS skips its own ``unacked`` write for a tag in ``recorded`` (the QoS's
    set): the turn's messages are recorded already.
    """

    def __init__(self, channel: Any) -> None:
        self._channel = channel
        self._script: Script | None = None
        self._keys: dict[str, list[str]] = {}  # TAKE's keys per queue, while its steps hold
        self._steps: list[int] = []
        #: Queues consumed with acknowledgements (the only ones whose turns go through TAKE).
        self.acked_queues: set[str] = set()

    def takes(self, queue: str) -> bool:
        """True when a turn on ``queue`` goes through ``TAKE``."""
        return queue in self.acked_queues and not self._channel.global_keyprefix

    def turn(self, queue: str, item: str, deliver: Callable[[Any, str], None]) -> None:
        """Record ``item`` (BRPOP's message of ``queue``), take more, ``deliver`` each in order.

        If a delivery raises, the messages after it reached no consumer: they go back to
        their queue at once (kombu's restore), not after the visibility timeout.
        """
        channel = self._channel
        first_recorded, *more = self._take(queue, item)
        messages = [loads(part) for part in [item, *(text(raw) for raw in more)]]  # type: ignore[no-untyped-call]
        tags = [message["properties"]["delivery_tag"] for message in messages[1:]]
        if first_recorded:
            tags.insert(0, messages[0]["properties"]["delivery_tag"])
        recorded: set[Any] = channel.qos.recorded
        recorded.update(tags)
        try:
            for index, message in enumerate(messages):
                try:
                    deliver(message, queue)
                except BaseException:
                    for rest in reversed(messages[index + 1 :]):  # the next one read first
                        channel.qos.restore_by_tag(rest["properties"]["delivery_tag"])
                    raise
        finally:
            recorded.difference_update(tags)

    def _take(self, queue: str, item: str) -> list[Any]:
        channel = self._channel
        room = channel.qos.can_consume_max_estimate()
        more = MAX_TAKE if room is None else max(min(room - 1, MAX_TAKE), 0)
        keys = self._keys.get(queue)
        if keys is None or self._steps != channel.priority_steps:
            if self._steps != channel.priority_steps:
                self._keys.clear()
                self._steps = list(channel.priority_steps)
            keys = self._keys[queue] = [
                channel.unacked_key,
                channel.unacked_index_key,
                *(channel._q_for_pri(queue, step) for step in self._steps),
            ]
        with channel.conn_or_acquire() as client:
            if self._script is None:
                self._script = client.register_script(TAKE)
            answer: list[Any] = self._script(
                keys=keys, args=[time.time(), more, item], client=client
            )
        return answer


def text(value: bytes | str) -> str:
    """A Redis reply as text."""
    return value.decode() if isinstance(value, bytes) else value
