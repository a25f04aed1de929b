"""The queue-control contract (``adapter.store.queues``), run on every store: memory, SQLite,
PostgreSQL, Redis. Stored controls, the gate's answers (pause, rate limit, concurrency), slot
liveness by heartbeat, release, and atomicity under threads and processes.
"""

from __future__ import annotations

import threading
import uuid
from datetime import datetime, timedelta

import pytest

from adapter.control import (
    CLAIM_GRACE_S,
    MAX_WAIT_S,
    RATE_MARGIN_S,
    QueueControl,
)
from adapter.errors import InvalidQueueControlError
from adapter.job import Job, utcnow
from adapter.store.base import JobStore
from adapter.store.queues import QueueStore, queue_store_for
from tests.contract.test_store_contract import (  # noqa: F401 - fixtures
    postgres_store,
    redis_prefix,
    redis_store,
    store,
)


def _queue() -> str:
    return f"qc-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def queues(store: JobStore) -> QueueStore:  # noqa: F811 - the fixture above
    return queue_store_for(store)


def _alive_since(seconds: float = 60) -> datetime:
    return utcnow() - timedelta(seconds=seconds)


def test_controls_are_stored_and_listed(queues: QueueStore) -> None:
    name = _queue()
    assert queues.control(name) == QueueControl()
    assert name not in queues.controls()
    queues.set_control(name, paused=True)
    changed = queues.set_control(name, concurrency=3, rate_limit="100 / m")
    assert changed == QueueControl(paused=True, concurrency=3, rate_limit="100/m")
    assert queues.control(name) == changed
    assert queues.controls()[name] == changed
    queues.set_control(name, paused=False, concurrency=None, rate_limit=None)
    assert queues.control(name) == QueueControl()
    assert name not in queues.controls()


@pytest.mark.parametrize(
    ("field", "value"),
    [("concurrency", 0), ("concurrency", "2"), ("rate_limit", "10/d"), ("rate_limit", "0/s")],
)
def test_bad_controls_are_refused_naming_them(
    queues: QueueStore, field: str, value: object
) -> None:
    name = _queue()
    with pytest.raises(InvalidQueueControlError, match=field):
        queues.set_control(name, **{field: value})  # type: ignore[arg-type]
    assert queues.control(name) == QueueControl()


def test_a_queue_without_controls_admits_every_job(queues: QueueStore) -> None:
    name = _queue()
    for index in range(5):
        assert queues.admit(name, f"j{index}", utcnow(), _alive_since()).run


def test_a_paused_queue_admits_nothing_until_resumed(queues: QueueStore) -> None:
    name = _queue()
    queues.set_control(name, paused=True)
    answer = queues.admit(name, "j1", utcnow(), _alive_since())
    assert not answer.run
    assert 0 < answer.wait_s <= MAX_WAIT_S
    assert answer.reason == "paused"
    queues.set_control(name, paused=False)
    assert queues.admit(name, "j1", utcnow(), _alive_since()).run


def test_the_rate_limit_admits_n_starts_per_window(queues: QueueStore) -> None:
    name = _queue()
    queues.set_control(name, rate_limit="3/s")
    start = utcnow()
    admitted = [queues.admit(name, f"j{i}", start, _alive_since()).run for i in range(5)]
    assert admitted == [True, True, True, False, False]
    refused = queues.admit(name, "j9", start + timedelta(seconds=0.5), _alive_since())
    assert refused.reason == "rate limit"
    assert 0 < refused.wait_s <= MAX_WAIT_S
    later = start + timedelta(seconds=1 + RATE_MARGIN_S + 0.01)
    assert queues.admit(name, "j9", later, _alive_since()).run


def test_concurrency_admits_n_and_a_release_frees_a_slot(queues: QueueStore) -> None:
    name = _queue()
    queues.set_control(name, concurrency=2)
    first = queues.admit(name, "a", utcnow(), _alive_since())
    second = queues.admit(name, "b", utcnow(), _alive_since())
    third = queues.admit(name, "c", utcnow(), _alive_since())
    assert first.run and first.holds_slot and second.run
    assert not third.run and third.reason == "concurrency"
    queues.release(name, "a")
    assert queues.admit(name, "c", utcnow(), _alive_since()).run


def test_a_duplicate_of_a_slot_holder_takes_no_second_slot(queues: QueueStore) -> None:
    name = _queue()
    queues.set_control(name, concurrency=1)
    assert queues.admit(name, "a", utcnow(), _alive_since()).holds_slot
    again = queues.admit(name, "a", utcnow(), _alive_since())
    assert again.run and not again.holds_slot


def _running_with_the_only_slot(
    store: JobStore,  # noqa: F811 - the fixture above
    queues: QueueStore,
    name: str,
    job_id: str,
) -> Job:
    """Limit ``name`` to one job at a time; admit and claim the stored job ``job_id``."""
    queues.set_control(name, concurrency=1)
    job = Job(queue_name=name, data={})
    job.id = job_id
    store.insert(job)
    assert queues.admit(name, job_id, utcnow(), _alive_since()).run
    claimed = store.claim(job)
    assert claimed is not None
    return claimed


def test_a_slot_of_a_silent_job_frees_after_the_heartbeat_timeout(
    store: JobStore,  # noqa: F811 - the fixture above
    queues: QueueStore,
) -> None:
    name = _queue()
    _running_with_the_only_slot(store, queues, name, "held")  # beating now
    later = utcnow() + timedelta(seconds=30)
    assert not queues.admit(name, "next", later, later - timedelta(seconds=60)).run
    much_later = utcnow() + timedelta(seconds=120)
    assert queues.admit(name, "next", much_later, much_later - timedelta(seconds=60)).run


def test_a_slot_of_a_settled_job_frees_at_once(
    store: JobStore,  # noqa: F811 - the fixture above
    queues: QueueStore,
) -> None:
    name = _queue()
    claimed = _running_with_the_only_slot(store, queues, name, "done")
    claimed.complete("ok")
    assert store.update(claimed)
    assert queues.admit(name, "next", utcnow(), _alive_since()).run


def test_concurrent_admissions_never_exceed_the_limit(queues: QueueStore) -> None:
    name = _queue()
    queues.set_control(name, concurrency=3, rate_limit="1000/s")
    admitted: list[str] = []
    lock = threading.Lock()

    def admit(index: int) -> None:
        for round_ in range(5):
            job_id = f"t{index}-{round_}"
            if queues.admit(name, job_id, utcnow(), _alive_since()).run:
                with lock:
                    admitted.append(job_id)

    threads = [threading.Thread(target=admit, args=(index,)) for index in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(admitted) == 3


def test_a_start_counts_from_its_claims_started_at(queues: QueueStore) -> None:
    name = _queue()
    queues.set_control(name, rate_limit="1/s")
    admitted = utcnow()
    assert queues.admit(name, "a", admitted, _alive_since()).counts_start
    started = admitted + timedelta(seconds=0.5)  # a slow claim
    queues.set_control(name, paused=False)  # other writes leave the start alone
    queues.started(name, "a", admitted, started)
    window_after_admission = admitted + timedelta(seconds=1 + RATE_MARGIN_S + 0.01)
    assert not queues.admit(name, "b", window_after_admission, _alive_since()).run
    window_after_start = started + timedelta(seconds=1 + RATE_MARGIN_S + 0.01)
    assert queues.admit(name, "b", window_after_start, _alive_since()).run


def test_a_slot_admitted_but_never_claimed_frees_after_the_claim_grace(
    queues: QueueStore,
) -> None:
    name = _queue()
    queues.set_control(name, concurrency=1)
    admitted = utcnow()
    assert queues.admit(name, "gone", admitted, _alive_since()).holds_slot  # then its worker died
    soon = admitted + timedelta(seconds=1)
    assert not queues.admit(name, "next", soon, _alive_since()).run
    after_grace = admitted + timedelta(seconds=CLAIM_GRACE_S + 0.1)
    assert queues.admit(name, "next", after_grace, _alive_since()).run
