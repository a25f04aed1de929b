"""kombu's ``filesystem://`` transport with first-in-first-out order across processes.

kombu names each message file ``<milliseconds>_<uuid4>``: two messages published within the
same millisecond sort by their random uuid, so jobs added in a burst run out of order. Here the
name starts with the system-wide monotonic clock in nanoseconds, zero-padded, so the file names
kombu sorts are in publishing order, whichever process on the machine published them.
A purge of a job queue cancels its waiting jobs (``adapter.celery.purge``). Everything else
(folders, locking, fanout) is kombu's.

An app uses it for ``filesystem://`` URLs once ``adapter.celery.app.use_adapter_transports``
has been called on it; importing this module changes nothing.
"""

from __future__ import annotations

import os
import time
import uuid
from typing import Any

from kombu.exceptions import ChannelError
from kombu.transport import filesystem
from kombu.utils.json import dumps

from adapter.celery.purge import PurgeNotifyingChannel


class Channel(PurgeNotifyingChannel, filesystem.Channel):
    """A filesystem channel whose message files sort in publishing order."""

    def _put(self, queue: Any, payload: Any, **kwargs: Any) -> None:  # type: ignore[override]
        filename = f"{time.monotonic_ns():020d}_{uuid.uuid4()}.{queue}.msg"
        path = os.path.join(self.data_folder_out, filename)
        # Write then rename: a reader never sees a half-written message.
        partial = path + ".tmp"
        try:
            with open(partial, "wb") as handle:
                handle.write(str(dumps(payload)).encode())  # type: ignore[no-untyped-call]
            os.replace(partial, path)
        except OSError as err:
            raise ChannelError(f"cannot add message file {path!r}") from err


class Transport(filesystem.Transport):
    """The ``filesystem://`` transport with ``Channel`` above."""

    Channel = Channel
