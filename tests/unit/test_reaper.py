"""The reaper's rounds: jobs of lost workers every interval, lost messages once per connection."""

from __future__ import annotations

import time
from datetime import datetime

from adapter.celery.reaper import Liveness, Reaper
from adapter.job import Job, utcnow
from adapter.store.memory import MemoryJobStore
from tests.support import wait_for


def test_unqueued_jobs_are_looked_for_once_per_start_a_heartbeat_timeout_after_it() -> None:
    store = MemoryJobStore()
    looked: list[datetime] = []
    rounds: list[int] = []

    def restore_messages() -> int:
        rounds.append(1)
        return 0

    def republish_unqueued(connected: datetime) -> list[Job] | None:
        looked.append(connected)
        return None if len(looked) == 1 else []  # the first time, another worker held the lock

    reaper = Reaper(
        lambda: store,
        lambda job: None,
        Liveness(heartbeat_interval=0.05, heartbeat_timeout=0.3),
        restore_messages=restore_messages,
        republish_unqueued=republish_unqueued,
    )
    started = utcnow()
    reaper.start()
    wait_for(lambda: len(rounds) >= 3, "three reaper rounds")
    assert looked == []  # messages taken just before connecting may not be recorded yet
    wait_for(lambda: len(looked) >= 2, "a look for unqueued jobs, asked again once")
    time.sleep(0.3)
    reaper.stop()
    assert len(looked) == 2
    assert started <= looked[0] == looked[1] <= utcnow()

    reaper.start()  # a consumer restarted (a new connection), its old thread still stopping
    wait_for(lambda: len(looked) == 3, "one more look after starting again")
    reaper.stop()
