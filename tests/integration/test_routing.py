"""Celery's worker flags and queue controls hold for job queues, and no job message loops.

Real ``celery worker`` subprocesses on Redis and RabbitMQ. Which queues a worker consumes is
asked the way an operator asks (``celery inspect active_queues``, as ``jobqueue queues``
does); deliveries of a job the worker cannot run are counted in the worker's log. The
default celery queue is a unique one per test (``task_default_queue``), as the broker is
shared: ``-Q <that queue>`` stands for ``-Q celery``.
"""

from __future__ import annotations

import contextlib
import json
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from kombu.entity import Exchange, Queue
from kombu.messaging import Producer

from adapter import CeleryJobQueueStrategy, Job, JobState
from adapter.celery.envelope import TASK_NAME
from adapter.celery.routing import celery_queue
from tests.integration.conftest import SERVER_BROKERS, WorkerProcess
from tests.support import (
    delete_queues,
    messages_waiting,
    unique_queue,
    wait_for,
    wait_settled,
)

pytestmark = SERVER_BROKERS


def consumed(strategy: CeleryJobQueueStrategy, names: list[str]) -> set[str]:
    """Return which of ``names`` some worker consumes now (``celery inspect active_queues``)."""
    return set(strategy.consumers()) & set(names)


def wait_consumed(strategy: CeleryJobQueueStrategy, names: list[str], expected: set[str]) -> None:
    """Wait until the workers consume exactly ``expected`` among ``names``."""
    wait_for(
        lambda: consumed(strategy, names) == expected or None,
        f"the workers to consume {sorted(expected)} among {sorted(names)}",
    )


def delete_plain_queue(strategy: CeleryJobQueueStrategy, name: str) -> None:
    """Delete the celery queue ``name`` itself (not a job queue), if it exists."""
    with strategy.app.connection_for_write() as connection, contextlib.suppress(Exception):
        connection.default_channel.queue_delete(name)


@pytest.mark.parametrize(
    ("flag", "selected"),
    [
        ("-Q", lambda q: (f"{celery_queue(q[0])},{q[1]}", {q[0], q[1]})),
        ("-X", lambda q: (f"{celery_queue(q[0])},{q[1]}", {q[2]})),
        ("-Q", lambda q: ("DEFAULT", set())),
    ],
    ids=["include-by-either-name", "exclude-by-either-name", "default-queue-only"],
)
def test_worker_flags_select_the_job_queues_it_consumes(
    control: CeleryJobQueueStrategy,
    make_worker: Callable[..., WorkerProcess],
    flag: str,
    selected: Callable[[list[str]], tuple[str, set[str]]],
) -> None:
    queues = [unique_queue(label) for label in ("a", "b", "c")]
    default = unique_queue("default")
    value, expected = selected(queues)
    worker = make_worker(
        ",".join(f"{q}=echo" for q in queues), flag, value.replace("DEFAULT", default)
    )
    try:
        worker.start()
        wait_consumed(control, queues, expected)
        jobs = {q: control.add(Job(queue_name=q, data=q)) for q in queues}
        done = {q: wait_settled(control, jobs[q]) for q in sorted(expected)}
        waiting = {q: messages_waiting(control, q) for q in queues if q not in expected}
        still = {q: control.find_one(str(jobs[q].id)) for q in waiting}
    finally:
        worker.stop()
        delete_queues(control, *queues)
        delete_plain_queue(control, default)
    assert {q: job.state for q, job in done.items()} == dict.fromkeys(expected, JobState.COMPLETED)
    assert waiting == dict.fromkeys(waiting, 1)  # the others wait in the broker
    assert all(job is not None and job.state == JobState.PENDING for job in still.values())


def test_add_and_cancel_consumer_change_the_job_queues_consumed(
    control: CeleryJobQueueStrategy, make_worker: Callable[..., WorkerProcess]
) -> None:
    a, b, idle = (unique_queue(label) for label in ("a", "b", "idle"))
    worker = make_worker(f"{a}=echo,{b}=echo", "-X", celery_queue(b))
    names = [a, b, idle]
    try:
        worker.start()
        wait_consumed(control, names, {a})
        control.app.control.add_consumer(celery_queue(b), reply=False)
        control.app.control.add_consumer(celery_queue(idle), reply=False)  # not started there
        wait_consumed(control, names, {a, b})
        job_b = wait_settled(control, control.add(Job(queue_name=b, data="b")))
        control.app.control.cancel_consumer(celery_queue(a), reply=False)
        wait_consumed(control, names, {b})
        job_a = control.add(Job(queue_name=a, data="a"))
        job_idle = control.add(Job(queue_name=idle, data="idle"))
        wait_settled(control, control.add(Job(queue_name=b, data="b again")))
        waiting = {q: messages_waiting(control, q) for q in (a, idle)}
        still = [control.find_one(str(job.id)) for job in (job_a, job_idle)]
    finally:
        worker.stop()
        delete_queues(control, *names)
    assert job_b.state == JobState.COMPLETED
    assert waiting == {a: 1, idle: 1}
    assert [job.state if job else None for job in still] == [JobState.PENDING] * 2


@pytest.mark.parametrize("pool", ["prefork", "solo"])
def test_job_on_a_consumed_queue_not_started_is_handed_back_a_bounded_number_of_times(
    control: CeleryJobQueueStrategy, make_worker: Callable[..., WorkerProcess], pool: str
) -> None:
    a, stray = unique_queue("a"), unique_queue("stray")
    stray_job = control.add(Job(queue_name=stray, data="stray"))  # waiting before the worker
    queues = f"{celery_queue(a)},{celery_queue(stray)}"
    worker = make_worker(f"{a}=echo", "-P", pool, "-Q", queues)
    try:
        worker.start()
        wait_consumed(control, [a, stray], {a})
        wait_settled(control, control.add(Job(queue_name=a, data=1)))
        first = worker.log_text().count(f"job {stray_job.id}: queue")
        wait_settled(control, control.add(Job(queue_name=a, data=2)))
        second = worker.log_text().count(f"job {stray_job.id}: queue")
        waiting = wait_for(lambda: messages_waiting(control, stray), "the stray job to wait")
        stored = control.find_one(str(stray_job.id))
    finally:
        worker.stop()
        delete_queues(control, a, stray)
    assert first <= 2 and second == first  # at most the prefetched copy, then never again
    assert waiting == 1
    assert stored is not None and stored.state == JobState.PENDING


def test_job_sent_without_a_queue_is_routed_to_its_own_queue_and_runs(
    control: CeleryJobQueueStrategy, make_worker: Callable[..., WorkerProcess]
) -> None:
    queue, default = unique_queue("own"), unique_queue("default")
    control.app.conf.task_default_queue = default
    job = Job(id=str(uuid.uuid4()), queue_name=queue, data={"via": "send_task"})
    worker = make_worker(f"{queue}=echo", "-Q", f"{default},{queue}")
    try:
        worker.start()
        control.app.send_task(TASK_NAME, args=[job.to_wire()], task_id=job.id)  # no queue=
        done = wait_settled(control, job)
        routed = worker.log_text().count(f"job {job.id} came through celery queue")
    finally:
        worker.stop()
        delete_queues(control, queue)
        delete_plain_queue(control, default)
    assert done.state == JobState.COMPLETED and done.result["data"] == {"via": "send_task"}
    assert (done.attempts, routed) == (1, 1)


def forge(strategy: CeleryJobQueueStrategy, queue: str, wire_job: dict[str, Any]) -> str:
    """Publish a job message by hand on the job queue of ``queue``; return its task id.

    The task id is the job's, as a careful forger sets it (a job whose id is not its task id
    is refused at once, ``adapter.celery.envelope.job_of``).
    """
    task_id = str(wire_job["id"])
    name = celery_queue(queue)
    exchange = Exchange(name, "direct")  # type: ignore[no-untyped-call]
    with strategy.app.connection_for_write() as connection:
        Producer(connection.default_channel).publish(  # type: ignore[no-untyped-call]
            json.dumps([[wire_job], {}, {}]).encode(),
            exchange=exchange,
            routing_key=name,
            content_type="application/json",
            content_encoding="utf-8",
            headers={"task": TASK_NAME, "id": task_id},
            declare=[Queue(name, exchange, routing_key=name)],  # type: ignore[no-untyped-call]
        )
    return task_id


def test_forged_messages_cannot_take_or_fake_a_job(
    control: CeleryJobQueueStrategy, make_worker: Callable[..., WorkerProcess]
) -> None:
    a, b = unique_queue("a"), unique_queue("b")
    victim = control.add(Job(queue_name=b, data={"owner": "b"}))
    control.flush()
    before = control.find_one(str(victim.id))
    fake_id = str(uuid.uuid4())
    big = Job(id=str(uuid.uuid4()), queue_name=a, data={"blob": "x" * 5000})
    worker_a = make_worker(f"{a}=echo", "-P", "prefork", "-c", "2", ADAPTER_MAX_DATA_BYTES="1000")
    worker_b = make_worker(f"{b}=echo")
    try:
        worker_a.start()
        stolen = victim.model_copy(update={"queue_name": a, "data": {"owner": "forger"}})
        forged = [  # (task id, the reason it is refused)
            (forge(control, a, stolen.to_wire()), f"is stored for queue {b!r}, not {a!r}"),
            (
                forge(control, a, victim.model_copy(update={"data": {"x": 1}}).to_wire()),
                f"of queue {b!r} came through {celery_queue(a)!r}",
            ),
            (
                forge(control, a, big.to_wire()),
                "the limit is 1000 (setting adapter_max_data_bytes)",
            ),
        ]
        own = control.add(Job(queue_name=a, data={"owner": "a"}))
        forge(control, a, own.model_copy(update={"data": {"owner": "forger"}}).to_wire())
        fake = Job(id=fake_id, queue_name=a, state=JobState.COMPLETED, result="never ran")
        forge(control, a, {**fake.to_wire(), "settledAt": "2020-01-01T00:00:00Z"})
        letters = wait_for(
            lambda: found if len(found := control.dead_letters()) >= len(forged) else None,
            "the forged messages to be dead-lettered",
        )
        ran = wait_settled(control, Job(id=fake_id, queue_name=a))
        own_done = wait_settled(control, own)
        untouched = control.find_one(str(victim.id))
        worker_b.start()
        victim_done = wait_settled(control, victim)
    finally:
        worker_a.stop()
        worker_b.stop()
        delete_queues(control, a, b)
    refused = [(letter.task_id, letter.reason) for letter in letters]
    assert len(refused) == len(forged)
    for task_id, reason in forged:
        assert any(t == task_id and reason in str(r) for t, r in refused), refused
    assert untouched == before  # same data, still PENDING
    assert victim_done.state == JobState.COMPLETED
    assert victim_done.result["data"] == {"owner": "b"}
    assert (ran.state, ran.attempts, ran.result["data"]) == (JobState.COMPLETED, 1, None)
    assert control.find_one(str(big.id)) is None
    assert (own_done.attempts, own_done.result["data"]) == (1, {"owner": "a"})  # stored data
