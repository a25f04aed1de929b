"""The reaper's rounds: jobs of lost workers every interval, lost messages once per connection."""

from __future__ import annotations

import time
from datetime import datetime

from adapter.backoff import constant_backoff
from adapter.celery.reaper import Reaper
from adapter.job import Job, utcnow
from adapter.lifecycle import Lifecycle, Liveness
from adapter.running import RunningJobs
from adapter.store.memory import MemoryJobStore
from tests.support import wait_for


def test_unqueued_jobs_are_looked_for_once_per_start_a_heartbeat_timeout_after_it() -> None:
    store = MemoryJobStore()
    looked: list[datetime] = []
    rounds: list[int] = []

    class Recovery:
        def restore_orphaned_messages(self) -> int:
            rounds.append(1)
            return 0

        def republish_unqueued_jobs(self, created_before: datetime) -> list[Job] | None:
            looked.append(created_before)
            return None if len(looked) == 1 else []  # the first time, another worker held it

    class Publisher:
        def publish(self, job: Job) -> None:
            pass

    liveness = Liveness(heartbeat_interval=0.05, heartbeat_timeout=0.3)
    lifecycle = Lifecycle(store, liveness, constant_backoff(), RunningJobs(store))
    reaper = Reaper(lifecycle, Publisher(), Recovery())
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
