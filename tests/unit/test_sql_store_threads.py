"""One SQLite store used by many threads of a process: every read sees whole, valid rows."""

from __future__ import annotations

import threading
from pathlib import Path

from adapter.job import JobState
from adapter.store.sql.store import SqlJobStore
from tests.factories import make_job

THREADS = 4
ROUNDS = 300


def test_reads_beside_writes_in_other_threads_return_valid_rows(tmp_path: Path) -> None:
    store = SqlJobStore(f"sqlite:///{tmp_path / 'jobs.sqlite3'}")
    failures: list[BaseException] = []
    start = threading.Barrier(THREADS * 2)

    def write() -> None:
        start.wait()
        for _ in range(ROUNDS):
            job = make_job(queue_name="threads")
            store.insert(job)
            store.claim(job)

    def read() -> None:
        start.wait()
        for _ in range(ROUNDS):
            for by_state in store.queue_counts().values():
                assert set(by_state) <= set(JobState)
            store.find_many({"take": 5})

    def guarded(action: object) -> None:
        try:
            action()  # type: ignore[operator]
        except BaseException as err:
            failures.append(err)

    threads = [threading.Thread(target=guarded, args=(f,)) for f in [write, read] * THREADS]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(120)
    finally:
        store.close()
    assert failures == []
