"""A broker stopped and started again while jobs are queued and a worker consumes them.

The broker is a private server on a free port (``tests.private_brokers``), never a shared one.
After it returns, the worker must reconnect and consume its queues again without any new call,
and every job must complete: those queued, those in flight when the broker went away, and
jobs added after it came back.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from adapter import CeleryJobQueueStrategy, Job, JobState
from tests.integration.conftest import WorkerProcess
from tests.integration.test_faults import counts
from tests.integration.test_lost_workers import LIVENESS
from tests.private_brokers import PrivateBroker
from tests.support import unique_queue, wait_for, wait_job, wait_settled

#: Each test starts a private RabbitMQ twice (up to 90 s each) besides its own waits.
pytestmark = pytest.mark.timeout(420)


@pytest.fixture(params=["redis", "rabbitmq"])
def private_broker(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[PrivateBroker]:
    """A broker of this test's own, started."""
    broker = PrivateBroker(str(request.param), tmp_path / "broker")
    broker.start()
    yield broker
    broker.stop()


@pytest.fixture
def broker_url(private_broker: PrivateBroker) -> str:
    """The private broker, for the producer and the workers (overrides conftest's)."""
    return private_broker.url


def test_jobs_complete_and_queues_are_consumed_again_after_a_broker_restart(
    private_broker: PrivateBroker,
    producer: CeleryJobQueueStrategy,
    make_worker: Callable[..., WorkerProcess],
    tmp_path: Path,
) -> None:
    queue = unique_queue("restart")
    run_log = tmp_path / "runs.log"
    run_log.touch()
    # 0.05 s a job: the 300 take at least 7.5 s on two processes, so the broker stops with
    # jobs still queued even when the adds are slow (a loaded machine).
    env = {**LIVENESS, "TEST_RUN_LOG": str(run_log), "TEST_NAP_S": "0.05"}
    worker = make_worker(f"{queue}=logged", "-P", "prefork", "-c", "2", **env)
    worker.start()
    try:
        before = [producer.add(Job(queue_name=queue, data={"n": n})) for n in range(300)]
        wait_for(lambda: counts(producer, queue)[JobState.COMPLETED] >= 50, "50 jobs completed")
        private_broker.stop()
        completed_while_down = counts(producer, queue)[JobState.COMPLETED]
        private_broker.start()
        after = producer.add(Job(queue_name=queue, data={"n": "after"}))
        done_after = wait_settled(producer, after)
        with contextlib.suppress(AssertionError):  # the asserts below say what is missing
            wait_for(
                lambda: counts(producer, queue)[JobState.COMPLETED] == 301,
                "every job completed",
                timeout=180,
            )
        alive = worker.popen is not None and worker.popen.poll() is None
    finally:
        worker.stop()

    assert completed_while_down < 300  # the broker went away with jobs still queued
    assert alive
    assert done_after.state == JobState.COMPLETED
    assert counts(producer, queue) == {JobState.COMPLETED: 301}
    assert set(run_log.read_text().split()) == {job.id for job in [*before, after]}


def test_a_job_running_across_a_broker_restart_completes_and_the_worker_goes_on(
    private_broker: PrivateBroker,
    producer: CeleryJobQueueStrategy,
    make_worker: Callable[..., WorkerProcess],
    tmp_path: Path,
) -> None:
    """The job finishes after the worker reconnected: its message is settled on a dead channel."""
    queue = unique_queue("restart-running")
    release = tmp_path / "release"
    worker = make_worker(f"{queue}=gated", "-P", "prefork", "-c", "2", **LIVENESS)
    worker.start()
    try:
        running = producer.add(Job(queue_name=queue, data={"release_file": str(release)}))
        wait_job(producer, running.id or "", lambda job: job.state == JobState.RUNNING, "running")
        private_broker.stop()
        private_broker.start()
        wait_for(lambda: worker.log_text().count("Connected to") >= 2, "the worker to reconnect")
        release.touch()
        finished = wait_settled(producer, running)
        later = wait_settled(
            producer, producer.add(Job(queue_name=queue, data={"release_file": str(release)}))
        )
        alive = worker.popen is not None and worker.popen.poll() is None
    finally:
        worker.stop()

    assert alive, worker.log_text()
    assert (finished.state, finished.attempts) == (JobState.COMPLETED, 1)
    assert later.state == JobState.COMPLETED
