"""The queue gate before each claim: a paused or limited queue's job waits, no attempt spent.

``GatedLifecycle`` is the lifecycle with ``QueueStore.admit`` (``adapter.control``'s rules,
atomic in the store) in front of ``claim``: a job that may not start now raises
``MustWait`` before anything is claimed, and the task (``adapter.celery.task``) hands its
message back with ``hand_back``: the same message published again with a short countdown
(the gate's wait, jittered, at most about a second) and this delivery acknowledged. A waiting
job so holds no pool slot (a countdown message waits in the worker's timer, or in the broker
when no worker consumes the queue) and counts no attempt; other queues' jobs run meanwhile.
A queue without controls, as this process read them at most ``CONTROLS_TTL_S`` ago, skips
the store (``ControlledQueues``). The concurrency slot an admitted attempt holds is released
when its attempt ends (or at once when its claim is refused).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from celery import Task
from celery.exceptions import Ignore, Reject

from adapter.celery.envelope import TIMEOUT_HEADER
from adapter.celery.publish import JobPublisher
from adapter.control import CONTROLS_TTL_S, Admission
from adapter.errors import JobQueueError, PublishError
from adapter.forksafe import ForkSafeLock
from adapter.job import Job, utcnow
from adapter.lifecycle import Lifecycle, Outcome, OutcomeWrite
from adapter.store.queues import QueueStore

logger = logging.getLogger(__name__)


class MustWait(JobQueueError):
    """Raised by ``GatedLifecycle.claim`` when the job's queue does not admit it now."""

    def __init__(self, job: Job, admission: Admission) -> None:
        super().__init__(
            f"job {job.id} on {job.queue_name!r} waits {admission.wait_s:.2f}s ({admission.reason})"
        )
        self.admission = admission


class ControlledQueues:
    """Which queues have controls, as read at most ``CONTROLS_TTL_S`` ago in this process."""

    def __init__(self, queues: QueueStore, ttl_s: float = CONTROLS_TTL_S) -> None:
        self._queues = queues
        self._ttl_s = ttl_s
        self._names: frozenset[str] = frozenset()
        self._read_at: float | None = None
        self._lock = ForkSafeLock()

    def may_control(self, queue_name: str) -> bool:
        """False when ``queue_name`` had no controls at the last read (read again when old)."""
        with self._lock:
            if self._read_at is None or time.monotonic() - self._read_at > self._ttl_s:
                try:
                    self._names = frozenset(self._queues.controls())
                except JobQueueError:  # the gate itself will meet the store's error
                    return True
                self._read_at = time.monotonic()
            return queue_name in self._names

    def forget(self) -> None:
        """Read again at the next job: this process just changed a control."""
        with self._lock:
            self._read_at = None


class GatedLifecycle(Lifecycle):
    """``Lifecycle`` whose claims pass the queue gate of ``queues`` first."""

    def __init__(self, queues: QueueStore, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.queues = queues
        self.controlled = ControlledQueues(queues)
        self._slots: set[str] = set()  # ids of this process's attempts holding a slot
        self._lock = ForkSafeLock()

    def claim(self, job: Job) -> Job | None:
        """Admit, then claim; ``MustWait`` (nothing claimed) when the queue says wait."""
        if not self.controlled.may_control(job.queue_name):
            return super().claim(job)
        job_id, now = str(job.id), utcnow()
        admission = self.queues.admit(job.queue_name, job_id, now, self.liveness.alive_since())
        if not admission.run:
            raise MustWait(job, admission)
        if admission.holds_slot:
            with self._lock:
                self._slots.add(job_id)
        try:
            claimed = super().claim(job)
        except BaseException:
            self._release(job)
            raise
        if claimed is None:
            self._release(job)
        elif admission.counts_start and claimed.started_at is not None:
            try:
                self.queues.started(job.queue_name, job_id, now, claimed.started_at)
            except JobQueueError as err:  # it still counts, from its admission
                logger.warning("job %s: could not record its start time: %s", job.id, err)
        return claimed

    def may_batch(self, queue_name: str) -> bool:
        """A queue that may have controls claims each job through the gate."""
        return not self.controlled.may_control(queue_name)

    def attempt(
        self,
        job: Job,
        process: Callable[[Job], Any],
        timeout: float | None = None,
        *,
        write: OutcomeWrite | None = None,
    ) -> Outcome:
        """Run the attempt, then free its concurrency slot."""
        try:
            return super().attempt(job, process, timeout, write=write)
        finally:
            self._release(job)

    def _release(self, job: Job) -> None:
        job_id = str(job.id)
        with self._lock:
            if job_id not in self._slots:
                return
            self._slots.discard(job_id)
        try:
            self.queues.release(job.queue_name, job_id)
        except JobQueueError as err:  # the slot frees once its job is settled or silent
            logger.warning("job %s: could not free its concurrency slot: %s", job.id, err)


def hand_back(task: Task, job: Job, waiting: MustWait) -> Exception:
    """Publish ``job``'s message again after the gate's wait; return what ends this delivery.

    Ignore acknowledges it; when the broker refuses the new message, Reject requeues this one.
    """
    try:
        JobPublisher(task.app, task).publish(  # the job's own timeout kept (its header)
            job,
            countdown=waiting.admission.wait_s,
            timeout=getattr(task.request, TIMEOUT_HEADER, None),
        )
    except PublishError as err:
        logger.warning("job %s: %s; could not hand it back (%s)", job.id, waiting, err)
        rejected: Exception = Reject(str(err), requeue=True)
        return rejected
    logger.debug("%s; handed back", waiting)
    ignored: Exception = Ignore(str(waiting))
    return ignored
