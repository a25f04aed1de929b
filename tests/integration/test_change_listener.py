"""A store's change listener outlives its server: after a Redis restart, writes wake watches again.

The test's own Redis (``tests.private_brokers``) is stopped and started under a watch; the
shared server is never touched. While the listener is away, ``updates()`` polls; once it has
subscribed again, a write wakes the watch as before.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from adapter.errors import StoreError
from adapter.store.redis.store import RedisJobStore
from tests.factories import make_job
from tests.private_brokers import PrivateBroker
from tests.support import wait_for

pytestmark = pytest.mark.timeout(180)

#: Seconds a watch is given to be woken by one write.
WOKEN_WITHIN_S = 0.5


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[PrivateBroker]:
    """A Redis server of this test's, stopped afterwards."""
    server = PrivateBroker("redis", tmp_path / "redis")
    server.start()
    yield server
    server.stop()


def test_a_watch_is_woken_again_once_the_listener_has_reconnected(
    private_redis: PrivateBroker,
) -> None:
    store = RedisJobStore(private_redis.url, prefix="changes")
    job = make_job()
    store.insert(job)
    with store.watch(str(job.id)) as watch:
        store.set_progress(str(job.id), 1)
        assert watch.wait(10)
        private_redis.stop()
        assert watch.wait(10)  # losing the connection wakes every watch: read again (poll)
        private_redis.start()
        progress = iter(range(2, 10_000))

        def woken_by_a_write() -> bool:
            try:
                store.set_progress(str(job.id), next(progress) / 100)
            except StoreError:
                return False  # the store's own client reconnects on a later call
            return watch.wait(WOKEN_WITHIN_S)

        wait_for(woken_by_a_write, "a write waking the watch after the restart", timeout=60)
        for percent in (20, 30, 40):  # beyond any wake-up left from the reconnection
            store.set_progress(str(job.id), percent)
            assert watch.wait(10)
    store.close()
