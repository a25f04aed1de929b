"""MemoryJobStore: what only it has (its URL, one store per name, its cap, its one lock).

The behaviour every store shares is in tests/contract/test_store_contract.py, run on it there.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest

from adapter.errors import ConfigurationError, DuplicateJobError
from adapter.job import JobState, utcnow
from adapter.store import open_store
from adapter.store.memory import MemoryJobStore
from tests.factories import make_job

#: Threads racing in one test.
RACERS = 8


def unique_url() -> str:
    """Return a ``memory://`` URL no other test uses (stores live as long as the process)."""
    return f"memory://t-{uuid.uuid4().hex[:12]}"


def test_every_opener_of_one_name_shares_one_store() -> None:
    url = unique_url()
    first, again = open_store(url), open_store(url)
    assert isinstance(first, MemoryJobStore)
    assert first is again and first.url == url
    job = make_job()
    first.insert(job)
    assert again.get(str(job.id)) == job
    other = open_store(unique_url())
    assert other is not first and other.get(str(job.id)) is None


def test_a_memory_url_without_its_slashes_is_refused() -> None:
    with pytest.raises(ConfigurationError, match=r"^malformed job store URL 'memory:jobs'"):
        open_store("memory:jobs")


def race(action: Callable[[], object]) -> list[object]:
    """Run ``action`` in RACERS threads released at once; return each outcome or exception."""
    start = threading.Barrier(RACERS)

    def one() -> object:
        start.wait()
        try:
            return action()
        except Exception as err:
            return err

    with ThreadPoolExecutor(RACERS) as pool:
        return list(pool.map(lambda _: one(), range(RACERS)))


def test_of_racing_inserts_of_one_id_exactly_one_is_stored() -> None:
    store = MemoryJobStore()
    job = make_job()
    outcomes = race(lambda: store.insert(job))
    assert outcomes.count(None) == 1
    assert all(isinstance(outcome, DuplicateJobError) for outcome in outcomes if outcome)


def test_of_racing_deliveries_of_one_job_exactly_one_claims_it() -> None:
    store = MemoryJobStore()
    job = make_job()
    alive_since = utcnow() - timedelta(seconds=30)
    claims = race(lambda: store.claim(job, busy_after=alive_since))
    assert sum(claim is not None for claim in claims) == 1
    found = store.get(str(job.id))
    assert found is not None and (found.state, found.attempts) == (JobState.RUNNING, 1)
