"""Retention: how many settled jobs each queue keeps, and for how long.

A rule names a queue (``"*"``: each queue on its own), a settled state (COMPLETED, FAILED or
CANCELLED; jobs still to run are never removed by retention), and a limit: keep at most
``keep`` of them (the newest by ``created_at``) and/or none created more than ``max_age`` ago.
The workers apply the rules on a schedule, as the built-in scheduled task
``adapter.retention`` (``adapter.scheduling.retention_task``), so one worker applies them per tick.

Each store deletes through the index it keeps on (queue, state, created_at), in batches, so a
rule costs the jobs it removes, plus (SQL, ``keep``) a walk over the ``keep`` newest index
entries; never a scan of the whole table per rule (``bench/retention.py``).

The setting ``adapter_retention`` spells rules as ``QUEUE:STATE:KEEP:MAX_AGE`` separated by
``;`` (an empty field: no such limit), e.g. ``*:COMPLETED:1000:7d;send-email:FAILED::30d``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Protocol

from adapter.errors import ScheduleError
from adapter.job import SETTLED_STATES, JobState, utcnow

#: Any queue: the rule applies to each queue on its own.
EACH_QUEUE = "*"
_RULES = "QUEUE:STATE:KEEP:MAX_AGE rules separated by ';'"
_DURATION = re.compile(r"(\d+(?:\.\d+)?)([smhdw])")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_duration(text: str) -> timedelta:
    """Return ``"90s"``, ``"15m"``, ``"2h"``, ``"7d"``, ``"1w"`` or ``"1h30m"`` as a timedelta."""
    parts = _DURATION.findall(text.strip())
    if not parts or "".join(n + u for n, u in parts) != text.strip():
        raise ValueError(f"not a duration: {text!r} (use e.g. 90s, 15m, 2h, 7d)")
    return sum((timedelta(**{_UNITS[unit]: float(n)}) for n, unit in parts), timedelta())


@dataclass(frozen=True)
class RetentionRule:
    """Keep at most ``keep`` jobs of ``queue_name`` in ``state``, none older than ``max_age``."""

    queue_name: str
    state: JobState
    keep: int | None = None
    max_age: timedelta | None = None

    def __post_init__(self) -> None:
        where = f"retention rule {self.queue_name}:{self.state}"
        if JobState(self.state) not in SETTLED_STATES:
            raise ScheduleError(f"{where}: state must be settled (COMPLETED, FAILED, CANCELLED)")
        if self.keep is None and self.max_age is None:
            raise ScheduleError(f"{where}: give keep, max_age or both")
        if self.keep is not None and self.keep < 0:
            raise ScheduleError(f"{where}: keep must be >= 0, not {self.keep}")
        if self.max_age is not None and self.max_age <= timedelta(0):
            raise ScheduleError(f"{where}: max_age must be > 0")

    @classmethod
    def parse(cls, text: str) -> RetentionRule:
        """Read ``QUEUE:STATE:KEEP:MAX_AGE`` (``*:COMPLETED:1000:7d``, ``q:FAILED::30d``)."""
        fields = text.strip().rsplit(":", 3)
        if len(fields) != 4:
            raise ScheduleError(f"retention rule {text!r}: use QUEUE:STATE:KEEP:MAX_AGE")
        queue, state, keep, age = (part.strip() for part in fields)
        try:
            return cls(
                queue,
                JobState(state.upper()),
                int(keep) if keep else None,
                parse_duration(age) if age else None,
            )
        except ScheduleError:
            raise
        except ValueError as err:
            raise ScheduleError(f"retention rule {text!r}: {err}") from None


def parse_rules(raw: object) -> tuple[RetentionRule, ...]:
    """Read rules from a setting: a ``;``-separated string, or a list of strings or rules."""
    items: Iterable[object] = raw.split(";") if isinstance(raw, str) else raw  # type: ignore[assignment]
    if not isinstance(items, Iterable):
        raise TypeError(f"{_RULES}, not {type(raw).__name__}")
    rules: list[RetentionRule] = []
    for index, item in enumerate(items):
        if isinstance(item, RetentionRule):
            rules.append(item)
        elif isinstance(item, str) and item.strip():
            try:
                rules.append(RetentionRule.parse(item))
            except ScheduleError as err:
                raise ValueError(f"{_RULES}; rule {index}: {err}") from None
        elif not isinstance(item, str):
            raise TypeError(f"{_RULES}; rule {index} is a {type(item).__name__}")
    return tuple(rules)


class RetentionStore(Protocol):
    """Where retention deletes (``adapter.store.schedules.ScheduleStore``)."""

    def apply_retention(self, rule: RetentionRule, now: Any) -> int:
        """Delete what ``rule`` does not keep; return how many jobs were removed."""


def apply_rules(store: RetentionStore, rules: Iterable[RetentionRule]) -> dict[str, int]:
    """Apply each rule now; return the jobs removed per rule (``QUEUE:STATE``)."""
    now = utcnow()
    removed: dict[str, int] = {}
    for rule in rules:
        key = f"{rule.queue_name}:{rule.state}"
        removed[key] = removed.get(key, 0) + store.apply_retention(rule, now)
    return removed
