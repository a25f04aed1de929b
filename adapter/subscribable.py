"""SubscribableJob and JobUpdate: follow a job's state and progress until it settles.

``updates()`` follows Vendure's semantics (reference §5): it emits a ``JobUpdate`` whenever
state or progress changed, and ends after the first settled state. A FAILED job raises
``JobFailedError`` when ``error_on_fail``. The timeout races the first emission: if the job has
not been seen before it runs out, one synthetic RUNNING update saying the subscription timed
out is emitted and the stream ends; once an update was emitted, the timeout no longer applies.
``deadline`` (ours, not Vendure's) bounds the whole wait: when it runs out the stream ends the
same way, with the last state seen, so following a job nobody runs ends too.

When to look (the design note). The stream takes a watch on its job from the store
(``adapter.store.changes``) before its first read, so no write falls in between. It reads the
job at once, whenever the watch is woken, and, as Vendure polls, every ``poll_interval``
seconds (at least 0.05). Stores that push changes (Redis pub/sub, PostgreSQL LISTEN/NOTIFY,
memory) wake the watch within about a millisecond of a write; on SQLite nothing wakes it, and
the poll alone finds changes. A settled job is emitted as soon as it is read; an unsettled one
is first emitted at the first poll (one interval after subscribing, Vendure's first look, so
the timeout races the first emission exactly as there), and every change after that as soon as
it is read. A wake-up is a hint: what is emitted comes from a fresh read, or from the job the
notification carried when it was settled (``adapter.store.changes.Change``; final, so as good
as a read); a notification saying the job is still unsettled spares the read before the first
poll, when it could emit nothing. A missed or duplicate notification changes when an update is
seen, never what it says.

Every update is a snapshot: nothing returned is shared with the store or another caller
(Vendure issue 5292). The stream can be consumed with ``for`` or ``async for``.
``job.wait_for_result(timeout)`` waits for the outcome (``result`` is already the job's field)
and returns the result, or raises the error that says why not.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable, Generator, Iterator
from typing import Any, Protocol, runtime_checkable

from pydantic import BaseModel, PrivateAttr

from adapter.errors import (
    JobCancelledError,
    JobFailedError,
    JobQueueError,
    JobResultTimeoutError,
)
from adapter.job import SETTLED_STATES, Job, JobState
from adapter.store.changes import Watch, unnotified_watch

logger = logging.getLogger(__name__)

#: Smallest poll interval, in seconds (Vendure: 50 ms).
MIN_POLL_INTERVAL_S = 0.05
#: Default poll interval, in seconds (Vendure: 200 ms).
DEFAULT_POLL_INTERVAL_S = 0.2
#: Default subscription timeout, in seconds (Vendure: one hour).
DEFAULT_TIMEOUT_S = 3600.0
#: Result of the synthetic update emitted when the subscription times out (Vendure's text).
TIMED_OUT_RESULT = "Job subscription timed out. The job may still be running"


class JobFinder(Protocol):
    """Anything that can look a job up by id (an inspectable strategy)."""

    def find_one(self, job_id: str) -> Job | None:
        """Return the job as stored now, or None."""


@runtime_checkable
class JobWatcher(Protocol):
    """A finder that can also say when a job may have changed (a strategy over a store)."""

    def watch_job(self, job_id: str) -> Watch:
        """Return a watch woken when ``job_id``'s state or progress may have been written."""

    def peek_job(self, job_id: str) -> Job | None:
        """Return the job as stored now, without first writing this process's pending adds."""


class JobUpdate(BaseModel):
    """One observed change of a job: Vendure's ``{id, state, progress, result, error, data}``."""

    id: str | None
    state: JobState
    progress: float
    result: Any = None
    error: Any = None
    data: Any = None

    @classmethod
    def of(cls, job: Job) -> JobUpdate:
        """Return the update describing ``job`` now."""
        return cls(
            id=job.id,
            state=job.state,
            progress=job.progress,
            result=job.result,
            error=job.error,
            data=job.data,
        )


class SubscribableJob(Job):
    """A Job returned by ``add``/``find_one`` that can follow itself with ``updates()``."""

    _finder: JobFinder | None = PrivateAttr(default=None)

    @classmethod
    def wrap(cls, job: Job, finder: JobFinder, **changes: Any) -> SubscribableJob:
        """Return ``job``'s fields, ``changes`` applied, as a SubscribableJob using ``finder``."""
        made = cls.from_fields({**job.__dict__, **changes})
        made._finder = finder
        return made

    def updates(
        self,
        poll_interval: float = DEFAULT_POLL_INTERVAL_S,
        timeout: float = DEFAULT_TIMEOUT_S,
        error_on_fail: bool = True,
        deadline: float | None = None,
    ) -> JobUpdates:
        """Return the stream of this job's updates (iterate with ``for`` or ``async for``).

        ``timeout`` races the first update (Vendure's); ``deadline`` seconds bound the whole
        stream (none by default).
        """
        if self._finder is None:
            raise JobQueueError("this job has no strategy to read updates from")
        if self.id is None:
            raise JobQueueError("job does not have an ID")
        return JobUpdates(self, self._finder, poll_interval, timeout, error_on_fail, deadline)

    def wait_for_result(
        self, timeout: float = DEFAULT_TIMEOUT_S, poll_interval: float = DEFAULT_POLL_INTERVAL_S
    ) -> Any:
        """Wait up to ``timeout`` seconds for this job to settle; return its result.

        Raises:
            JobFailedError: the job FAILED (its error is the message).
            JobCancelledError: the job was CANCELLED.
            JobResultTimeoutError: it had not settled when ``timeout`` ran out.
        """
        updates = self.updates(poll_interval, timeout, error_on_fail=False, deadline=timeout)
        final = updates.last()
        if final is None or updates.timed_out:
            raise JobResultTimeoutError(f"job {self.id} did not settle within {timeout} s")
        if final.state == JobState.FAILED:
            raise JobFailedError(str(final.error))
        if final.state == JobState.CANCELLED:
            raise JobCancelledError(f"job {self.id} was cancelled")
        return final.result


class JobUpdates:
    """The updates of one job; iterate it once, with ``for`` or ``async for``."""

    def __init__(
        self,
        job: Job,
        finder: JobFinder,
        poll_interval: float,
        timeout: float,
        error_on_fail: bool,
        deadline: float | None = None,
    ) -> None:
        self._job = job
        self._finder = finder
        self._poll = max(poll_interval, MIN_POLL_INTERVAL_S)
        self._timeout = max(timeout, 0.001)
        self._error_on_fail = error_on_fail
        self._deadline = None if deadline is None else max(deadline, 0.001)
        #: True once the stream ended because its timeout or deadline ran out.
        self.timed_out = False

    def __iter__(self) -> Iterator[JobUpdate]:
        with self._watch() as watch:
            steps = self._steps()
            reply: Job | bool | None = None
            while True:
                try:
                    step = steps.send(reply)
                except StopIteration:
                    return
                reply = None
                if isinstance(step, JobUpdate):
                    yield step
                elif isinstance(step, _Read):
                    told, reply = _told(step, watch)
                    if not told:
                        reply = self._reader(step)(self._job.id or "")
                else:
                    reply = watch.wait(step)

    async def __aiter__(self) -> AsyncIterator[JobUpdate]:
        # the first watch of a process starts its listener: not on the event loop
        with await asyncio.to_thread(self._watch) as watch:
            steps = self._steps()
            reply: Job | bool | None = None
            while True:
                try:
                    step = steps.send(reply)
                except StopIteration:
                    return
                reply = None
                if isinstance(step, JobUpdate):
                    yield step
                elif isinstance(step, _Read):
                    told, reply = _told(step, watch)
                    if not told:
                        reply = await asyncio.to_thread(self._reader(step), self._job.id or "")
                else:
                    reply = await watch.wait_async(step)

    def _reader(self, step: _Read) -> Callable[[str], Job | None]:
        """Return how to read the job: a poll writes this process's pending adds first."""
        if step.peek and isinstance(self._finder, JobWatcher):
            return self._finder.peek_job
        return self._finder.find_one

    def _watch(self) -> Watch:
        """Return the watch on this job: the store's, or one nothing wakes (then we poll)."""
        job_id = self._job.id or ""
        if isinstance(self._finder, JobWatcher):
            return self._finder.watch_job(job_id)
        return unnotified_watch(job_id)

    def _steps(self) -> Generator[JobUpdate | float | _Read, Job | bool | None, None]:
        """Yield each step: a _Read (send the job back), a wait (send back if woken), an update."""
        now = time.monotonic()
        first_by = now + self._timeout
        end = now + self._deadline if self._deadline is not None else float("inf")
        due = now + self._poll  # like Vendure's interval(): the first poll after one interval
        polled = False  # before the first poll only a settled job is emitted, as Vendure would
        found = _job_or_none((yield _PEEK))
        last: tuple[JobState, float] | None = None
        seen: Job = self._job
        while True:
            if found is not None and (polled or found.state in SETTLED_STATES):
                seen = found
                if (found.state, found.progress) != last:
                    last = (found.state, found.progress)
                    if found.state == JobState.FAILED and self._error_on_fail:
                        raise JobFailedError(str(found.error))
                    yield JobUpdate.of(found)
                    if found.state in SETTLED_STATES:
                        return
            until = min(end, first_by) if last is None else end
            woken = bool((yield max(min(due, until) - time.monotonic(), 0.0)))
            now = time.monotonic()
            if not woken and now >= until:
                yield self._timed_out(seen)
                return
            polling = now >= due
            if polling:
                due, polled = now + self._poll, True
            found = _job_or_none((yield _READ if polling else _PEEK if polled else _PEEK_SETTLED))

    def _timed_out(self, seen: Job) -> JobUpdate:
        """Vendure's synthetic update; after a deadline, with the last state seen."""
        logger.error("subscription to job %s timed out", self._job.id)
        self.timed_out = True
        return JobUpdate(
            id=self._job.id,
            state=JobState.RUNNING if seen is self._job else seen.state,
            progress=seen.progress,
            result=TIMED_OUT_RESULT,
            error=seen.error,
            data=self._job.data,
        )

    def last(self) -> JobUpdate | None:
        """Consume the stream and return its final update (Vendure's promise form)."""
        final = None
        for final in self:  # noqa: B007 - the last one is the point
            pass
        return final


class _Read:
    """Step asking the iterator to look the job up and send it back.

    A poll reads as ``find_one`` does; the first read and a woken one peek (a job this process
    added and has not written yet is not seen until written: a worker's claim records it, and
    an unsettled job is not emitted before the first poll anyway). A woken peek takes what the
    notification told instead when it is enough (``_told``); ``settled_only``: before the first
    poll, when only a settled job can be emitted.
    """

    def __init__(self, peek: bool, settled_only: bool = False) -> None:
        self.peek = peek
        self.settled_only = settled_only


_READ, _PEEK = _Read(peek=False), _Read(peek=True)
_PEEK_SETTLED = _Read(peek=True, settled_only=True)


def _told(step: _Read, watch: Watch) -> tuple[bool, Job | None]:
    """Answer a peek from the watch's last notification: (True, the job) when it is enough.

    A settled job it carried is final; a state it said is unsettled is enough when only a
    settled job could be emitted (the answer is then None: nothing to emit). Any other peek,
    and every poll, reads the store.
    """
    change = watch.take_change()
    if change is None or not step.peek:
        return False, None
    if change.settled is not None:
        return True, change.settled
    if step.settled_only and not change.is_settled:
        return True, None
    return False, None


def _job_or_none(reply: Job | bool | None) -> Job | None:
    """Return the job a _READ step was answered with."""
    return reply if isinstance(reply, Job) else None
