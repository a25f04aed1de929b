"""Jobs outside the field ranges, and a write-behind whose batches a test controls."""

from __future__ import annotations

import os
from typing import Final

import pytest

from adapter.celery.write_behind import WriteBehind
from adapter.errors import InvalidJobError, InvalidQueueNameError

#: A queue name of 10 kB, far past the limit of 200 characters.
HUGE_QUEUE_NAME: Final = "q" * 10_240

#: ``(fields, error, message)``: fields ``add`` must refuse, the error and part of its message.
OUT_OF_RANGE_ADDS: Final = [
    pytest.param({"retries": 2**64}, InvalidJobError, "retries is 1844674", id="retries-2**64"),
    pytest.param({"retries": -1}, InvalidJobError, "retries is -1;", id="retries-minus-1"),
    pytest.param({"queue_name": HUGE_QUEUE_NAME}, InvalidQueueNameError, "10240", id="queue-10kB"),
    pytest.param({"priority": 10}, InvalidJobError, "priority is 10;", id="priority-10"),
]


class BatchOnlyWriteBehind(WriteBehind):
    """A write-behind without its thread: ``flush()`` writes everything added as one batch."""

    def _start_thread(self) -> None:
        self._pid = os.getpid()
