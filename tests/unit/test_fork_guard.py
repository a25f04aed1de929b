"""The reaper and the write-behind of one process never wait for each other for ever.

A process that adds jobs and runs a worker (an embedded worker, a web app) has both: the
reaper guards its store calls against forks (``adapter.forksafe.no_fork``), and the store
writes the pending adds first. Reaping while adds wait to be written once deadlocked.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest
from celery import Celery

from adapter import CeleryJobQueueStrategy, Job
from adapter.store.memory import MemoryJobStore


@pytest.fixture
def strategy() -> Iterator[CeleryJobQueueStrategy]:
    app = Celery("fork-guard")
    app.config_from_object("celeryconfig")
    app.conf.broker_url = "memory://"
    made = CeleryJobQueueStrategy(app, store=MemoryJobStore(), embedded_worker=False)
    yield made
    made.destroy()


def test_reaping_while_adds_wait_to_be_written_finishes(strategy: CeleryJobQueueStrategy) -> None:
    for n in range(50):
        strategy.add(Job(queue_name="guarded", data={"n": n}))
    done = threading.Event()

    def reap() -> None:
        strategy.reap_lost_jobs()
        done.set()

    threading.Thread(target=reap, daemon=True).start()

    assert done.wait(10), "reaping waited for ever on the write-behind"
    assert strategy.find_many({"filter": {"queueName": {"eq": "guarded"}}}).total_items == 50
