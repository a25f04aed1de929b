"""The ``regex`` filter of ``find_many``: patterns bounded in length and matching time.

A list filter's pattern comes from whoever calls ``find_many`` (an admin API may pass a user's
options straight through), and Python's ``re`` can backtrack for minutes on a short pattern
while holding the GIL, which freezes every thread of the process. So patterns are compiled by
the ``regex`` package (compatible with ``re``: its VERSION0 syntax), which gives up on a
timeout and releases the GIL while it matches:

- a pattern longer than ``MAX_PATTERN_LENGTH`` characters, that does not compile, or that
  repeats a group which itself holds a repeat (``([a-z]+)+``, ``(a*b)*``: nested quantifiers,
  the classic catastrophic-backtracking shape) is refused when the options are parsed
  (``check_pattern``), so on every store, PostgreSQL included;
- every match made by one ``find_many`` call, whichever store makes it (SQLite's REGEXP
  function, the Redis and memory stores' filtering in Python), shares one budget of
  ``MATCH_BUDGET_S`` seconds (``match_budget``). Once it is spent, matching stops at once (every
  further match is false, so a SQL query still finishes quickly) and the call raises
  ``InvalidListOptionsError`` naming the pattern instead of returning a page.

The budget is per thread: SQLite calls its functions on the thread that runs the query.
PostgreSQL matches with its own engine (``~*``), which does not backtrack catastrophically.
"""

from __future__ import annotations

import functools
import re
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import regex

from adapter.errors import InvalidListOptionsError

#: Longest pattern a ``regex`` filter accepts, in characters.
MAX_PATTERN_LENGTH = 256
#: Seconds of matching one ``find_many`` call may spend on its patterns, in all.
MATCH_BUDGET_S = 1.0


class MatchBudget:
    """The matching time left to one ``find_many`` call, and the pattern that ran out of it."""

    def __init__(self, seconds: float) -> None:
        """Start a budget of ``seconds`` now."""
        self.seconds = seconds
        self.deadline = time.monotonic() + seconds
        #: The first pattern that ran out of time, with the field it filtered.
        self.exhausted_by: tuple[str, str] | None = None

    def raise_if_exhausted(self) -> None:
        """Raise InvalidListOptionsError naming the pattern that ran out of time, if one did."""
        if self.exhausted_by is not None:
            field, pattern = self.exhausted_by
            raise InvalidListOptionsError(
                f"filter.{field}.regex: {pattern!r} took more than the {self.seconds:g} s "
                "matching budget of one query (it backtracks too much); simplify the pattern"
            )


_current = threading.local()


@contextmanager
def match_budget(seconds: float = MATCH_BUDGET_S) -> Iterator[MatchBudget]:
    """Bound every ``search`` of this thread inside the block to ``seconds`` in all."""
    previous: MatchBudget | None = getattr(_current, "budget", None)
    budget = MatchBudget(seconds)
    _current.budget = budget
    try:
        yield budget
    finally:
        _current.budget = previous


def check_pattern(pattern: str) -> str:
    """Return ``pattern`` if a ``regex`` filter accepts it, else raise ValueError saying why."""
    if len(pattern) > MAX_PATTERN_LENGTH:
        raise ValueError(
            f"a pattern of {len(pattern)} characters is longer than the limit of "
            f"{MAX_PATTERN_LENGTH}"
        )
    try:
        _compiled(pattern)
    except regex.error as err:
        raise ValueError(f"not a valid regular expression: {err}") from err
    if _repeats_a_repeat(pattern):
        raise ValueError(
            "a repeated group holds a repeat (nested quantifiers such as ([a-z]+)+), which can "
            "backtrack for minutes; repeat the group or its content, not both"
        )
    return pattern


def search(pattern: str, value: str, field: str) -> bool:
    """Tell whether ``pattern`` occurs in ``value``, ignoring case, within this thread's budget.

    Outside ``match_budget`` the match gets a budget of its own. Once the budget is spent the
    answer is False and the budget names ``pattern`` and ``field``.
    """
    budget: MatchBudget | None = getattr(_current, "budget", None)
    if budget is None:
        with match_budget() as own:
            found = search(pattern, value, field)
        own.raise_if_exhausted()
        return found
    if budget.exhausted_by is not None:
        return False
    left = budget.deadline - time.monotonic()
    try:
        if left > 0:
            return _compiled(pattern).search(value, timeout=left) is not None
    except TimeoutError:
        pass
    budget.exhausted_by = (field, pattern)
    return False


#: A counted quantifier: ``{n}``, ``{n,}``, ``{,m}`` or ``{n,m}``.
_COUNTED = re.compile(r"\{(\d*)(,?)(\d*)\}")


def _repeats_a_repeat(pattern: str) -> bool:
    """Tell whether a varying quantifier applies to a group that holds one."""
    holds_repeat = [False]  # per open group, the outermost first
    closed_repeating_group = False
    at = 0
    while at < len(pattern):
        char, after = pattern[at], at + 1
        repeat = _repeat_length(pattern, at)
        if repeat:
            if closed_repeating_group:
                return True
            holds_repeat[-1] = True
            after = at + repeat
        elif char == "\\":
            after = at + 2
        elif char == "[":
            after = _class_end(pattern, at)
        elif char == "(":
            holds_repeat.append(False)
        elif char == ")" and len(holds_repeat) > 1:
            inner = holds_repeat.pop()
            holds_repeat[-1] = holds_repeat[-1] or inner
            closed_repeating_group = inner
            at = after
            continue
        closed_repeating_group = False
        at = after
    return False


def _repeat_length(pattern: str, at: int) -> int:
    """Return the length of a quantifier at ``at`` with a varying count above one, else 0."""
    if pattern[at] in "*+":
        return 1
    counted = _COUNTED.match(pattern, at) if pattern[at] == "{" else None
    if counted is None:
        return 0
    low, comma, high = counted.groups()
    least = int(low or 0)
    most = int(high) if high else (None if comma else least)
    varies = most is None or (most > 1 and most > least)
    return len(counted.group()) if varies else 0


def _class_end(pattern: str, at: int) -> int:
    """Return the index just after the character class that opens at ``at``."""
    at += 1
    if pattern[at : at + 1] == "^":
        at += 1
    if pattern[at : at + 1] == "]":  # a ] first in a class is a literal
        at += 1
    while at < len(pattern) and pattern[at] != "]":
        at += 2 if pattern[at] == "\\" else 1
    return at + 1


@functools.lru_cache(maxsize=256)
def _compiled(pattern: str) -> regex.Pattern[str]:
    return regex.compile(pattern, regex.IGNORECASE | regex.VERSION0)
