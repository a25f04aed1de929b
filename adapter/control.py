"""Queue controls: pause, cluster-wide concurrency and rate limits, as rules and data.

An operator steers a queue, on every worker at once, with three stored controls
(``QueueControl``): ``paused`` (no new job starts; adds still succeed and wait),
``concurrency`` (at most N jobs of the queue RUNNING at once across all workers) and
``rate_limit`` (``"100/m"``: at most 100 starts in any minute across all workers). They live
in the job store beside the jobs (``adapter.store.queues``), so they survive worker and broker
restarts.

Every attempt passes one gate before its claim (``QueueStore.admit``, atomic in each store),
which answers ``Admission``: run, or wait some seconds. Rules of the gate, written once here
and applied by every store:

- paused: wait ``PAUSED_RECHECK_S`` (workers also stop consuming a paused queue, so its
  messages stay in the broker: ``adapter.celery.pausing``);
- rate limit: a start is allowed while fewer than N starts are recorded in the last window
  plus ``RATE_MARGIN_S``; else wait until the oldest of them leaves it. A start is recorded
  at admission, then moved to the ``started_at`` its claim stamps (``QueueStore.started``), so
  no window of ``started_at`` holds more than N however long a claim takes; the margin covers
  a start still being claimed;
- concurrency: a slot is held per job from its admission until its attempt ends; a slot
  counts while its job is unsettled and either RUNNING with a fresh heartbeat (``Liveness``)
  or admitted less than ``CLAIM_GRACE_S`` ago: a dead worker's slot frees when its heartbeat
  expires. A job admitted again while its slot is live (a duplicate delivery) runs on without
  taking a second slot (``holds_slot`` False: claim refuses a live duplicate anyway).
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final, Protocol, runtime_checkable

from adapter.errors import InvalidQueueControlError

#: Wait of a job of a paused queue before it is offered again, in seconds.
PAUSED_RECHECK_S = 1.0
#: Wait of a job beyond the concurrency limit before it is offered again, in seconds.
CONCURRENCY_RECHECK_S = 0.5
#: Longest wait the gate asks for; a job waits again if still not admitted then, in seconds.
MAX_WAIT_S = 1.0
#: Shortest wait, so a message handed back is not spun at once, in seconds.
MIN_WAIT_S = 0.02
#: How old each process's view of which queues have controls may be, in seconds: a new
#: control reaches every worker within it (a queue without controls then costs no store read).
CONTROLS_TTL_S = 0.5
#: Extra seconds a start counts in a rate window: the gate-to-claim moment (see above).
RATE_MARGIN_S = 0.1
#: How long a slot counts for a job admitted but not RUNNING (its claim follows within
#: milliseconds; a shutdown or a hard time limit in between leaves the slot this long), in s.
CLAIM_GRACE_S = 5.0
#: Largest ``concurrency`` and ``rate_limit`` count accepted.
MAX_LIMIT = 1_000_000
#: Seconds of one unit of ``rate_limit``.
RATE_UNITS: Final = {"s": 1.0, "m": 60.0, "h": 3600.0}

_RATE = re.compile(r"^\s*(\d+)\s*/\s*([smh])\s*$")


class Unchanged:
    """The type of ``UNCHANGED``."""

    def __repr__(self) -> str:
        return "UNCHANGED"


#: Keeps a control as stored (``set_queue_limits(name, rate_limit=UNCHANGED)``).
UNCHANGED: Final = Unchanged()


@dataclass(frozen=True)
class RateLimit:
    """At most ``count`` starts in any ``window_s`` seconds."""

    count: int
    window_s: float

    @classmethod
    def parse(cls, text: str) -> RateLimit:
        """Read ``"N/s"``, ``"N/m"`` or ``"N/h"``; InvalidQueueControlError naming the value."""
        found = _RATE.match(text) if isinstance(text, str) else None
        if found is None or not 1 <= int(found.group(1)) <= MAX_LIMIT:
            raise InvalidQueueControlError(
                f"rate_limit {text!r} is not N/s, N/m or N/h with N from 1 to {MAX_LIMIT}"
            )
        return cls(int(found.group(1)), RATE_UNITS[found.group(2)])

    @property
    def counted_s(self) -> float:
        """How long a start counts against the limit, in seconds (the window and the margin)."""
        return self.window_s + RATE_MARGIN_S


@dataclass(frozen=True)
class QueueControl:
    """The stored controls of one queue; the defaults mean "not controlled"."""

    paused: bool = False
    concurrency: int | None = None
    rate_limit: str | None = None

    @property
    def rate(self) -> RateLimit | None:
        """The parsed rate limit, or None."""
        return None if self.rate_limit is None else RateLimit.parse(self.rate_limit)

    @property
    def is_default(self) -> bool:
        """True when nothing is controlled: the gate lets every job run."""
        return self == QueueControl()

    def changed(
        self,
        *,
        paused: bool | Unchanged = UNCHANGED,
        concurrency: int | Unchanged | None = UNCHANGED,
        rate_limit: str | Unchanged | None = UNCHANGED,
    ) -> QueueControl:
        """Return these controls with the given ones replaced, each checked."""
        return QueueControl(
            paused=self.paused if isinstance(paused, Unchanged) else bool(paused),
            concurrency=(
                self.concurrency
                if isinstance(concurrency, Unchanged)
                else check_concurrency(concurrency)
            ),
            rate_limit=(
                self.rate_limit
                if isinstance(rate_limit, Unchanged)
                else check_rate_limit(rate_limit)
            ),
        )

    def as_dict(self) -> dict[str, Any]:
        """The controls as JSON-ready values (the CLI's ``--json``)."""
        return {
            "paused": self.paused,
            "concurrency": self.concurrency,
            "rateLimit": self.rate_limit,
        }


def check_concurrency(value: Any) -> int | None:
    """Return ``value`` as a concurrency limit (None: unlimited) or raise naming it."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_LIMIT:
        raise InvalidQueueControlError(
            f"concurrency {value!r} is not a whole number from 1 to {MAX_LIMIT} (or None)"
        )
    return value


def check_rate_limit(value: Any) -> str | None:
    """Return ``value`` normalized (``"100/m"``; None: unlimited) or raise naming it."""
    if value is None:
        return None
    rate = RateLimit.parse(value)
    unit = next(name for name, seconds in RATE_UNITS.items() if seconds == rate.window_s)
    return f"{rate.count}/{unit}"


@dataclass(frozen=True)
class Admission:
    """The gate's answer for one attempt: run now, or wait ``wait_s`` seconds."""

    run: bool
    wait_s: float = 0.0
    #: The attempt holds a concurrency slot, to release when it ends.
    holds_slot: bool = False
    #: Why it waits, for logs ("paused", "concurrency", "rate limit").
    reason: str = ""
    #: A start was recorded for the rate limit, to move to the claim's ``started_at``.
    counts_start: bool = False


#: The answer for a queue without controls.
ADMITTED = Admission(run=True)


def wait(seconds: float, reason: str) -> Admission:
    """Return a wait of about ``seconds`` (jittered by up to a fifth, within the bounds)."""
    jittered = seconds * random.uniform(1.0, 1.2)
    return Admission(run=False, wait_s=min(max(jittered, MIN_WAIT_S), MAX_WAIT_S), reason=reason)


def decide(
    control: QueueControl,
    *,
    now_s: float,
    started: int,
    nth_newest_s: float | None,
    live_slots: int,
    has_slot: bool,
) -> Admission:
    """Apply the gate's rules to one attempt, given what the store holds for its queue.

    ``started``: starts still counted by the rate limit; ``nth_newest_s``: when there are at
    least N of them, the time (seconds since the epoch) of the N-th newest, which must leave
    the window before another start;
    ``live_slots``: concurrency slots held by live attempts of other jobs; ``has_slot``: this
    job holds a live slot already (a duplicate delivery). The store records a start and a slot
    when the answer runs (``holds_slot``). The Redis store's Lua mirrors this function.
    """
    if control.paused:
        return wait(PAUSED_RECHECK_S, "paused")
    rate = control.rate
    if rate is not None and started >= rate.count and nth_newest_s is not None:
        return wait(nth_newest_s + rate.counted_s - now_s, "rate limit")
    if control.concurrency is not None and not has_slot and live_slots >= control.concurrency:
        return wait(CONCURRENCY_RECHECK_S, "concurrency")
    return Admission(
        run=True,
        holds_slot=control.concurrency is not None and not has_slot,
        counts_start=rate is not None,
    )


def slot_alive(
    job_state: str | None,
    beat_at: datetime | None,
    settled: bool,
    admitted_at: datetime,
    *,
    alive_since: datetime,
    now: datetime,
) -> bool:
    """True while a concurrency slot counts (see above); ``job_state`` None: no such job."""
    claiming = admitted_at >= now - timedelta(seconds=CLAIM_GRACE_S)
    if job_state is None or settled:
        return claiming and not settled
    beating = job_state == "RUNNING" and beat_at is not None and beat_at >= alive_since
    return beating or claiming


@runtime_checkable
class ControllableStrategy(Protocol):
    """A strategy whose queues can be paused and limited (``CeleryJobQueueStrategy``)."""

    def pause_queue(self, queue_name: str) -> QueueControl:
        """Pause ``queue_name`` on every worker."""

    def resume_queue(self, queue_name: str) -> QueueControl:
        """Resume ``queue_name``."""

    def set_queue_limits(
        self,
        queue_name: str,
        *,
        concurrency: int | Unchanged | None = UNCHANGED,
        rate_limit: str | Unchanged | None = UNCHANGED,
    ) -> QueueControl:
        """Set the cluster-wide limits of ``queue_name``."""

    def queue_controls(self) -> dict[str, QueueControl]:
        """Return the stored controls of every queue that has some."""


def controllable(strategy: object) -> ControllableStrategy:
    """Return ``strategy`` as a ``ControllableStrategy``, or raise naming what it lacks."""
    if not isinstance(strategy, ControllableStrategy):
        raise InvalidQueueControlError(
            f"{type(strategy).__name__} cannot pause or limit queues (CeleryJobQueueStrategy can)"
        )
    return strategy
