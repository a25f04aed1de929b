"""SubscribableJob and JobUpdate: follow a job's state and progress until it settles.

``updates()`` follows Vendure's semantics (reference §5): it polls the store every
``poll_interval`` seconds (at least 0.05), emits a ``JobUpdate`` whenever state or progress
changed, and ends after the first settled state. A FAILED job raises ``JobFailedError`` when
``error_on_fail``. The timeout races the first emission: if the job has not been seen before it
runs out, one synthetic RUNNING update saying the subscription timed out is emitted and the
stream ends; once an update was emitted, the timeout no longer applies. ``deadline`` (ours, not
Vendure's) bounds the whole wait: when it runs out the stream ends the same way, with the last
state seen, so following a job nobody runs ends too.

Every update is a snapshot: nothing returned is shared with the store or another caller
(Vendure issue 5292). The stream can be consumed with ``for`` or ``async for``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Generator, Iterator
from typing import Any, Protocol

from pydantic import BaseModel, PrivateAttr

from adapter.errors import JobFailedError, JobQueueError
from adapter.job import SETTLED_STATES, Job, JobState

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
        fields = {name: getattr(job, name) for name in Job.model_fields}
        made = cls.model_construct(**{**fields, **changes})
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
        steps = self._steps()
        found: Job | None = None
        while True:
            try:
                step = steps.send(found)
            except StopIteration:
                return
            found = None
            if isinstance(step, JobUpdate):
                yield step
            elif isinstance(step, _Poll):
                found = self._finder.find_one(self._job.id or "")
            else:
                time.sleep(step)

    async def __aiter__(self) -> AsyncIterator[JobUpdate]:
        steps = self._steps()
        found: Job | None = None
        while True:
            try:
                step = steps.send(found)
            except StopIteration:
                return
            found = None
            if isinstance(step, JobUpdate):
                yield step
            elif isinstance(step, _Poll):
                found = await asyncio.to_thread(self._finder.find_one, self._job.id or "")
            else:
                await asyncio.sleep(step)

    def _steps(self) -> Generator[JobUpdate | float | _Poll, Job | None, None]:
        """Yield what to do next: _POLL (send back the job found), a sleep, or an update."""
        now = time.monotonic()
        first_by = now + self._timeout
        end = now + self._deadline if self._deadline is not None else float("inf")
        last: tuple[JobState, float] | None = None
        seen: Job = self._job
        while True:
            # Like Vendure's interval(): the first look comes one poll interval after subscribing.
            until = min(end, first_by) if last is None else end
            yield max(min(self._poll, until - time.monotonic()), 0.0)
            if time.monotonic() >= until:
                yield self._timed_out(seen)
                return
            found = yield _POLL
            seen = found or seen
            if found is None or (found.state, found.progress) == last:
                continue
            last = (found.state, found.progress)
            if found.state == JobState.FAILED and self._error_on_fail:
                raise JobFailedError(str(found.error))
            yield JobUpdate.of(found)
            if found.state in SETTLED_STATES:
                return

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


class _Poll:
    """Step asking the iterator to look the job up and send it back."""


_POLL = _Poll()
