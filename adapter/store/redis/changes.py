"""Redis pub/sub feed of job changes: the store's scripts publish, one thread listens.

Every script that changes a job's state or progress (claim, update, set_progress and each job
a transition changes) ends with ``PUBLISH {prefix}:changed <job id>``, in the same atomic step
as the write, so a subscriber hears of it within a round trip. ``RedisChangeListener`` is the
store's one subscriber connection in a process (``adapter.store.changes``).
"""

from __future__ import annotations

import threading
from collections.abc import Callable

import redis

from adapter.masking import mask_url
from adapter.store.changes import LISTEN_TICK_S, ChangeHub, ChangeListener

#: Seconds to wait for a connection to Redis.
CONNECT_TIMEOUT_S = 5.0
#: Seconds between the listener's pings of an idle connection (finds a dead server).
HEALTH_CHECK_S = 15


class RedisChangeListener(ChangeListener):
    """Subscribes to one channel and notifies the hub with each job id published there."""

    def __init__(self, url: str, channel: str) -> None:
        super().__init__(f"{mask_url(url)} channel {channel}")
        self._url = url
        self._channel = channel

    def _listen(
        self, stopping: threading.Event, hub: ChangeHub, subscribed: Callable[[], None]
    ) -> None:
        client = redis.Redis.from_url(
            self._url,
            decode_responses=True,
            socket_connect_timeout=CONNECT_TIMEOUT_S,
            health_check_interval=HEALTH_CHECK_S,
        )
        try:
            with client.pubsub() as pubsub:
                pubsub.subscribe(self._channel)
                while not stopping.is_set():
                    message = pubsub.get_message(timeout=LISTEN_TICK_S)
                    if message is None:
                        continue
                    if message["type"] == "subscribe":
                        subscribed()
                    elif message["type"] == "message":
                        hub.notify(str(message["data"]))
        finally:
            client.close()
