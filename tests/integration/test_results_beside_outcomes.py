"""A completed job's Celery result is written with its outcome when the result backend is the
job store's Redis database (``adapter.celery.results.ResultsBesideOutcomes``).

The worker is a plain prefork ``celery worker`` on Redis or RabbitMQ, its job store and result
backend the tests' Redis database. A watcher reads each job's state and its result key in one
transaction, again and again while the jobs run: no read may find a job COMPLETED without its
result, which a separate write after the outcome's would leave visible.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator

import pytest
import redis
from celery import Celery

from adapter import CeleryJobQueueStrategy, Job, JobState
from adapter.store.redis.layout import RedisKeys
from tests.integration.conftest import WorkerProcess
from tests.support import delete_queues, unique_queue, wait_settled

pytestmark = pytest.mark.redis

#: Jobs a test runs: enough for a watcher to read several of them as they complete.
JOBS = 40
#: Reads the watcher makes at most before it gives up on the jobs completing.
MAX_READS = 200_000


@pytest.fixture(params=["redis", "rabbitmq"])
def broker_url(request: pytest.FixtureRequest) -> str:
    """A real broker: the result and the outcome share the store's Redis on either."""
    return str(request.getfixturevalue("redis_url" if request.param == "redis" else "amqp_url"))


@pytest.fixture
def store_url(redis_url: str) -> str:
    """The job store in the result backend's Redis database."""
    return redis_url


@pytest.fixture
def watcher(redis_url: str) -> Iterator[redis.Redis]:
    """A plain client on the tests' database."""
    made = redis.Redis.from_url(redis_url, decode_responses=True)
    yield made
    made.close()


def test_a_completed_job_is_never_seen_without_its_celery_result(
    producer: CeleryJobQueueStrategy,
    make_worker: Callable[..., WorkerProcess],
    watcher: redis.Redis,
    broker_url: str,
    redis_url: str,
) -> None:
    queue = unique_queue("beside")
    worker = make_worker(
        f"{queue}=echo", "-P", "prefork", "-c", "2", CELERY_RESULT_BACKEND=redis_url
    )
    client = Celery("client", broker=broker_url, backend=redis_url)
    try:
        worker.start()
        jobs = [producer.add(Job(queue_name=queue, data={"n": n})) for n in range(JOBS)]
        without_result = _watch(watcher, [str(job.id) for job in jobs])
        settled = [wait_settled(producer, job) for job in jobs]
        # disable_sync_subtasks: an embedded worker of another test in this process may have
        # told Celery (process-wide) that joins would block; this process runs no task.
        results = [
            client.AsyncResult(job.id).get(timeout=60, disable_sync_subtasks=False) for job in jobs
        ]
        meta = json.loads(watcher.get(f"celery-task-meta-{jobs[0].id}") or "{}")
    finally:
        worker.stop()
        delete_queues(producer, queue)
        watcher.delete(*(f"celery-task-meta-{job.id}" for job in jobs))
        client.close()
    assert without_result == []
    assert all(job.state == JobState.COMPLETED for job in settled)
    assert results == [job.result for job in settled]
    assert set(meta) == {"status", "result", "traceback", "children", "date_done", "task_id"}
    assert (meta["status"], meta["task_id"]) == ("SUCCESS", jobs[0].id)


def _watch(client: redis.Redis, job_ids: list[str]) -> list[str]:
    """Read each job's state and result key together until all completed; return the ids of
    jobs once read COMPLETED without a result."""
    keys = RedisKeys("adapter")
    waiting, without_result = set(job_ids), []
    for _ in range(MAX_READS):
        if not waiting:
            break
        asked = sorted(waiting)
        pipe = client.pipeline(transaction=True)
        for job_id in asked:
            pipe.hget(keys.job(job_id), "state")
            pipe.exists(f"celery-task-meta-{job_id}")
        read = pipe.execute()
        for job_id, state, has_result in zip(asked, read[::2], read[1::2], strict=True):
            if state == JobState.COMPLETED:
                if not has_result:
                    without_result.append(job_id)
                waiting.discard(job_id)
    return without_result
