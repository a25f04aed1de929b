"""Redis: messages a dead worker had taken are put back on their queue, within a heartbeat window;
jobs whose message Redis lost are published again.

With late acknowledgement a Redis worker leaves every message it took in kombu's ``unacked``
hash until it acknowledges it. When the worker dies, kombu puts the message back only after
``visibility_timeout`` (an hour by default; it must stay longer than the longest task of the
deployment, or Celery runs long tasks twice). The reaper's heartbeats cover the jobs that had
started; this covers the rest: messages of jobs a worker took but never started, and retries
waiting for their countdown in a worker's memory.

Each reaper round, messages of the adapter's job queues (``jobs.*``, never another app's)
unacknowledged for longer than the heartbeat timeout, and not due in the future, go back to
their queue with kombu's own restore (an atomic transaction per message, safe beside kombu's
own sweeps), unless their job is RUNNING or settled: a live worker's long job is never
delivered twice, a lost worker's RUNNING job is the reaper's (RETRYING and published again; its
message comes back the round after, and that copy is dropped at claim), and a settled job's
message (its worker between the outcome write and the acknowledgement, or lost there) is left
to that worker or to kombu's ``visibility_timeout`` (a copy delivered then is dropped at
claim). One worker at a time does it, under the adapter's lock (``LOCK_KEY``), which expires
after a heartbeat timeout: kombu's own lock lives five minutes, and a worker killed while
holding it would stop every recovery for that long.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

from celery import Celery
from kombu.transport.redis import Mutex, MutexHeld

from adapter.celery.envelope import stored_job_due, stored_task_id
from adapter.celery.routing import celery_queue
from adapter.forksafe import no_fork
from adapter.job import SETTLED_STATES, Job, JobState, utcnow
from adapter.lifecycle import Liveness
from adapter.store.base import JobStore

logger = logging.getLogger(__name__)

#: Jobs, or messages, read per call while looking for jobs whose message was lost.
PAGE = 1000
#: The states of a job whose message should be on the broker.
_WAITING = (JobState.PENDING, JobState.RETRYING)
#: The states of a job whose unacknowledged message is left where it is: a worker runs it, or
#: its outcome is recorded (a worker between its outcome write and its acknowledgement).
_KEPT = frozenset({JobState.RUNNING, *SETTLED_STATES})
#: Redis key of the lock that lets one worker at a time recover messages (kombu prefixes it).
LOCK_KEY = "adapter.recovery_mutex"


def restore_orphaned_messages(app: Celery, store: JobStore, older_than_s: float) -> int:
    """Put back job messages unacknowledged for ``older_than_s``; return how many (Redis only).

    A message whose job is RUNNING stays where it is: a live worker runs it, however long it
    takes, and once that worker is lost the reaper turns the job RETRYING and the next round
    puts the message back. A settled job's message stays too: nothing is left to run. The
    lock is held for at most ``older_than_s`` (a worker killed
    holding it blocks no longer).
    """
    with app.pool.acquire(block=True) as connection:
        if connection.transport.driver_type != "redis":
            return 0
        channel = connection.default_channel
        qos = channel.qos
        cutoff = time.time() - older_than_s
        restored = 0
        with channel.conn_or_acquire() as client:
            try:
                with Mutex(client, LOCK_KEY, older_than_s):
                    index = _full_key(channel, qos.unacked_index_key)
                    taken = {
                        stored_task_id(raw, unacked=True): tag
                        for tag in client.zrangebyscore(index, 0, cutoff)
                        if (raw := client.hget(qos.unacked_key, tag)) is not None
                        and _orphan(raw, cutoff)
                    }
                    for job_id in _to_restore(store, list(taken)):
                        qos.restore_by_tag(taken[job_id], client)
                        restored += 1
            except MutexHeld:
                return 0  # another worker is restoring right now
    if restored:
        logger.warning("put back %d job message(s) taken by a worker that was lost", restored)
    return restored


def _to_restore(store: JobStore, job_ids: list[str]) -> list[str]:
    """The ids among ``job_ids`` whose job may still need its message: neither RUNNING nor
    settled (unknown ids included)."""
    with no_fork():  # a store call from a prefork pool's parent (adapter.forksafe)
        kept = {job.id for job in store.find_many_by_id(job_ids) if job.state in _KEPT}
    return [job_id for job_id in job_ids if job_id not in kept]


def _orphan(raw: Any, cutoff: float) -> bool:
    """True for a job-queue message not due after ``cutoff`` (a retry may wait in a worker)."""
    due = stored_job_due(raw)  # None: another app's message, or unreadable: left to kombu
    return due is not None and due <= cutoff


def republish_unqueued_jobs(
    app: Celery,
    store: JobStore,
    publish: Callable[[Job], None],
    created_before: datetime,
    lock_s: float,
) -> list[Job] | None:
    """Publish again the waiting jobs that have no message left in Redis; return them.

    None means it could not look now (another worker holds the lock, for at most ``lock_s``
    seconds): ask again later.

    kombu takes a message off its Redis list (``BRPOP``) and only then records it as
    unacknowledged: a message taken at the moment the server goes away is in neither place,
    and its job would wait for ever. This reads the ids of every job-queue message (lists and
    unacknowledged ones), then publishes again each PENDING or RETRYING job created before
    ``created_before`` (when this worker connected) whose id is not among them, and that are
    still waiting when looked up again (not consumed meanwhile). The whole backlog is read,
    so a worker does it once per connection (``Reaper``), one worker at a time.
    """
    with app.pool.acquire(block=True) as connection:
        if connection.transport.driver_type != "redis":
            return []
        channel = connection.default_channel
        with channel.conn_or_acquire() as client:
            try:
                with Mutex(client, LOCK_KEY, lock_s):
                    queued = _queued_ids(channel, client)
            except MutexHeld:
                return None
    with no_fork():  # a store call from a prefork pool's parent (adapter.forksafe)
        waiting = _waiting_ids(store, created_before)
        unqueued = [job_id for job_id in waiting if job_id not in queued]
        lost: list[Job] = []
        for start in range(0, len(unqueued), PAGE):  # still waiting now: not consumed meanwhile
            chunk = store.find_many_by_id(unqueued[start : start + PAGE])
            lost.extend(job for job in chunk if job.state in _WAITING and not _delayed(job))
    for job in lost:
        logger.warning(
            "job %s on %r is %s but its message is gone from Redis; publishing it again",
            job.id, job.queue_name, job.state,
        )  # fmt: skip
        publish(job)
    return lost


def _delayed(job: Job) -> bool:
    """True for a delayed job the promoter has not published yet (it has no message)."""
    return job.ready_at is not None and job.ready_at > utcnow()


def _waiting_ids(store: JobStore, created_before: datetime) -> list[str]:
    # By state alone, oldest first: a query the Redis store's indexes answer, however many
    # jobs wait (a createdAt filter would make it read them all, past its scan limit).
    ids: list[str] = []
    skip = 0
    while True:
        page = store.find_many(
            {
                "filter": {"state": {"in": [state.value for state in _WAITING]}},
                "sort": {"createdAt": "ASC"},
                "skip": skip,
                "take": PAGE,
            }
        )
        for job in page.items:
            if job.created_at >= created_before:
                return ids
            ids.append(str(job.id))
        if len(page.items) < PAGE:
            return ids
        skip += PAGE


def _queued_ids(channel: Any, client: Any) -> set[str]:
    """Task ids of the messages on job-queue lists, then of the unacknowledged ones.

    In that order a message a worker takes meanwhile is seen in one or the other, unless it
    is read between the pop and its record as unacknowledged (microseconds): then its job is
    published twice, and the copy is dropped at claim.
    """
    ids: set[str] = set()
    for key in client.scan_iter(match=_full_key(channel, celery_queue("*")), _type="LIST"):
        start = 0
        while chunk := client.lrange(key, start, start + PAGE - 1):
            ids.update(stored_task_id(raw) for raw in chunk)
            start += len(chunk)
    unacked = client.hvals(_full_key(channel, channel.qos.unacked_key))
    ids.update(stored_task_id(raw, unacked=True) for raw in unacked)
    return ids


def _full_key(channel: Any, key: str) -> str:
    """``key`` with kombu's ``global_keyprefix``, for the commands kombu does not prefix itself.

    kombu's client adds the prefix to the commands it uses (HGET, LPUSH, ZADD...), not to the
    others used here (ZRANGEBYSCORE, HVALS, SCAN, and LRANGE on keys SCAN returns in full).
    """
    return f"{getattr(channel, 'global_keyprefix', '') or ''}{key}"


class OrphanRecovery:
    """The reaper's help on Redis (``adapter.celery.reaper.MessageRecovery``) for one app."""

    def __init__(self, app: Celery, store: JobStore, publisher: Any, liveness: Liveness) -> None:
        self._app = app
        self._store = store
        self._publisher = publisher
        self._liveness = liveness

    def restore_orphaned_messages(self) -> int:
        """Put back job messages lost workers had taken; return how many."""
        return restore_orphaned_messages(self._app, self._store, self._liveness.heartbeat_timeout)

    def republish_unqueued_jobs(self, created_before: datetime) -> list[Job] | None:
        """Publish again the waiting jobs whose message Redis lost (see the function)."""
        return republish_unqueued_jobs(
            self._app,
            self._store,
            self._publisher.publish,
            created_before,
            self._liveness.heartbeat_timeout,
        )
