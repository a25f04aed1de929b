"""kombu's ``redis://`` transport, surviving a Redis server that goes away.

When the broker connection drops, Celery closes the consumer's connection, and closing a
Redis channel first tries to hand its unacknowledged messages back. By then kombu has
detached the channel from its connection, so building a Redis client for that raises
``AttributeError`` (not a connection error): Celery calls it an unrecoverable error and the
whole worker exits instead of reconnecting (seen with kombu 5.7 when the server restarts).
Here that hand-back is skipped when the connection is gone: the messages stay in kombu's
``unacked`` hash, and the adapter's reaper puts job messages back within its heartbeat window
(``adapter.celery.orphans``), kombu the rest after ``visibility_timeout``. Everything else is
kombu's.

Importing ``adapter.celery`` makes ``redis://`` and ``rediss://`` URLs use this transport in
that process (kombu's transport alias table), as ``adapter.celery.filesystem`` does.
"""

from __future__ import annotations

import logging
from typing import Any

from kombu.transport import TRANSPORT_ALIASES, redis

logger = logging.getLogger(__name__)


class QoS(redis.QoS):
    """Redis QoS whose hand-back of unacknowledged messages tolerates a lost connection."""

    def restore_unacked(self, client: Any = None) -> Any:
        try:
            return super().restore_unacked(client)  # type: ignore[no-untyped-call]
        except AttributeError:
            connection = getattr(self.channel, "connection", None)
            if connection is not None and getattr(connection, "client", None) is not None:
                raise
            logger.warning(
                "broker connection lost: unacknowledged messages stay with Redis until "
                "they are restored (job messages within the heartbeat timeout)"
            )
            return None


class Channel(redis.Channel):
    """A Redis channel with ``QoS`` above."""

    QoS = QoS


class Transport(redis.Transport):
    """The ``redis://`` transport with ``Channel`` above."""

    Channel = Channel


TRANSPORT_ALIASES["redis"] = f"{__name__}:Transport"
TRANSPORT_ALIASES["rediss"] = f"{__name__}:Transport"
