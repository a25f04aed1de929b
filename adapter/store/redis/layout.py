"""How the Redis job store lays out its data: key names, job hash fields, and index plans.

The Lua scripts of ``adapter.store.redis.scripts`` spell the same key names; this module is
where Python reads and writes them. ``plan_index`` turns a list query into the sorted sets that
hold its candidates, and says whether those sets answer the filter exactly (then
``find_many`` pages them by rank without reading a single job).
"""

from __future__ import annotations

import functools
import json
import uuid
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from adapter.conditions import Condition, condition_tree, matches
from adapter.job import SETTLED_STATES, Job, JobState, Transition
from adapter.listing import JobFilter, JobListOptions, LogicalOperator, StringOperators

#: Start of the epoch in which times are stored, as integer microseconds.
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
#: The unit of stored times (built once: ``micros`` runs for every time of every job written).
_MICROSECOND = timedelta(microseconds=1)
#: Filter fields the sorted-set indexes can answer.
_INDEXED_FIELDS = frozenset({"queue_name", "state", "is_settled"})


def micros(value: datetime) -> int:
    """Return ``value`` as whole microseconds since 1970 UTC; a naive time is UTC."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return (value - EPOCH) // _MICROSECOND


def from_micros(value: str | int) -> datetime:
    """Return the timezone-aware UTC time stored as microseconds since 1970."""
    return EPOCH + timedelta(microseconds=int(value))


@dataclass(frozen=True)
class RedisKeys:
    """The key names under one prefix (see the key layout in ``adapter.store.redis.store``)."""

    prefix: str

    @property
    def schema(self) -> str:
        """String holding the layout version."""
        return f"{self.prefix}:schema"

    @property
    def queues(self) -> str:
        """Set of the queue names that have jobs."""
        return f"{self.prefix}:queues"

    @property
    def all(self) -> str:
        """Sorted set of every job, scored by creation time."""
        return f"{self.prefix}:idx:all"

    @property
    def settled(self) -> str:
        """Sorted set of the settled jobs, scored by settlement time."""
        return f"{self.prefix}:idx:settled"

    @property
    def unstamped(self) -> str:
        """Set of the jobs in a settled state without a settlement time (so not settled)."""
        return f"{self.prefix}:idx:unstamped"

    @property
    def dead_letters(self) -> str:
        """List of dead letters as JSON, newest first."""
        return f"{self.prefix}:dead"

    @property
    def changes(self) -> str:
        """Pub/sub channel: the id of each job whose state or progress was written."""
        return f"{self.prefix}:changed"

    def job(self, job_id: str) -> str:
        """Hash of one job."""
        return f"{self.prefix}:job:{job_id}"

    def queue(self, queue_name: str) -> str:
        """Sorted set of one queue's jobs, scored by creation time."""
        return f"{self.prefix}:idx:queue:{queue_name}"

    def state(self, state: str) -> str:
        """Sorted set of the jobs in one state, scored by creation time."""
        return f"{self.prefix}:idx:state:{state}"

    def state_queue(self, state: str, queue_name: str) -> str:
        """Sorted set of one queue's jobs in one state, scored by creation time."""
        return f"{self.prefix}:idx:state:{state}:queue:{queue_name}"

    def settled_queue(self, queue_name: str) -> str:
        """Sorted set of one queue's settled jobs, scored by settlement time."""
        return f"{self.prefix}:idx:settled:queue:{queue_name}"

    def scratch(self) -> str:
        """A fresh key for a union that lives only while one script runs."""
        return f"{self.prefix}:tmp:{uuid.uuid4().hex}"


#: Fields a job hash holds only when set; a job stored before they existed lacks them too.
_OPTIONAL_FIELDS = ("ready_at", "unique_key", "retried_from", "timeout")


def job_hash(job: Job, updated_at: datetime) -> dict[str, str]:
    """Return the hash fields of ``job``; a missing field means None (error, times, keys), and
    a missing ``priority`` 0 (hashes written before it existed).

    Each field as ``field_text`` writes it, written out here: this runs for every job stored.
    """
    fields = {
        "id": str(job.id),
        "queue_name": job.queue_name,
        "data": json.dumps(job.data),
        "created_at": str(micros(job.created_at)),
        "priority": str(job.priority),
    }
    for name in _OPTIONAL_FIELDS:
        value = getattr(job, name)
        if value is not None:
            fields[name] = field_text(name, value)
    fields.update(mutable_fields(job, updated_at))
    return fields


def mutable_fields(job: Job, updated_at: datetime) -> dict[str, str]:
    """Return the hash fields of ``job`` an update writes (``MUTABLE_FIELDS`` that are set)."""
    result = job.result
    fields = {
        "state": str(job.state),  # a JobState (a StrEnum) or its value: the value
        "progress": repr(float(job.progress)),
        "result": "null" if result is None else json.dumps(result),
        "retries": str(job.retries),
        "attempts": str(job.attempts),
        "updated_at": str(micros(updated_at)),
    }
    for name in ("error", "started_at", "settled_at"):
        value = getattr(job, name)
        if value is not None:
            fields[name] = field_text(name, value)
    return fields


def field_text(name: str, value: Any) -> str:
    """Return one job field as its hash stores it (see the key layout)."""
    if name in {"data", "result"}:
        return json.dumps(value)
    if isinstance(value, datetime):
        return str(micros(value))
    if name in {"progress", "timeout"}:
        return repr(float(value))
    if isinstance(value, JobState):
        return value.value
    return str(value)


@functools.cache
def transition_spec(transition: Transition) -> str:
    """Return ``transition`` as the JSON the scripts' ``transit`` reads (built once each)."""
    spec: dict[str, Any] = {
        "sources": dict.fromkeys(sorted(transition.sources), True),
        "stale": dict.fromkeys(sorted(transition.stale_sources), True),
        "values": {name: field_text(name, v) for name, v in transition.values.items()},
        "stamps": list(transition.stamps),
        "counts": transition.counts_attempt,
    }
    if transition.state is not None:
        spec["state"] = transition.state.value
    return json.dumps(spec)


def job_from_hash(fields: Mapping[str, str]) -> Job:
    """Return a fresh Job from its hash fields."""
    progress = float(fields["progress"])
    started, settled = fields.get("started_at"), fields.get("settled_at")
    ready = fields.get("ready_at")
    return Job.model_construct(
        id=fields["id"],
        queue_name=fields["queue_name"],
        data=json.loads(fields["data"]),
        state=JobState(fields["state"]),
        progress=int(progress) if progress.is_integer() else progress,
        result=json.loads(fields["result"]),
        error=fields.get("error"),
        retries=int(fields["retries"]),
        attempts=int(fields["attempts"]),
        created_at=from_micros(fields["created_at"]),
        started_at=None if started is None else from_micros(started),
        settled_at=None if settled is None else from_micros(settled),
        ready_at=None if ready is None else from_micros(ready),
        priority=int(fields.get("priority", 0)),
        unique_key=fields.get("unique_key"),
        retried_from=fields.get("retried_from"),
        timeout=None if (timeout := fields.get("timeout")) is None else float(timeout),
    )


@dataclass(frozen=True)
class IndexPlan:
    """The sorted sets (disjoint, scored by creation time) that hold every candidate job."""

    keys: list[str]
    #: True when the union of ``keys`` is exactly the jobs that match the filter.
    exact: bool


def plan_index(
    options: JobListOptions,
    keys: RedisKeys,
    queue_names: Callable[[], Collection[str]],
    has_unstamped: Callable[[], bool],
) -> IndexPlan:
    """Return the narrowest indexes for the filter of ``options``.

    Only top-level conditions that must all hold narrow the search: those on ``queue_name``
    (tested against ``queue_names()``, the queues that have jobs), and on ``state`` and
    ``is_settled`` (tested against the six states). ``is_settled`` follows from the state
    unless ``has_unstamped()``: a job in a settled state without ``settled_at`` is not settled.
    """
    tree = condition_tree(options.filter, options.filter_operator)
    if tree.operator is LogicalOperator.OR and len(tree.conditions) > 1:
        return IndexPlan([keys.all], exact=False)
    narrowing = [
        node
        for node in tree.conditions
        if isinstance(node, Condition) and node.field in _INDEXED_FIELDS
    ]
    indexed = {node.field for node in narrowing}
    exact = len(narrowing) == len(tree.conditions)
    top = options.filter or JobFilter()
    queues: list[str] | None = None
    if "queue_name" in indexed:
        queues = _listed(top.queue_name)
        if queues is None:
            queues = _passing_queues(top.queue_name, queue_names())
    states: list[str] | None = None
    if "is_settled" in indexed:
        loose = has_unstamped()
        exact = exact and not loose
        states = _passing_states(JobFilter(state=top.state, is_settled=top.is_settled), loose)
    elif "state" in indexed:
        listed = _listed(top.state)
        if listed is None:
            states = _passing_states(JobFilter(state=top.state), loose=False)
        else:
            states = [state for state in listed if state in JobState.__members__]
    if queues is None and states is None:
        return IndexPlan([keys.all], exact)
    if states is None:
        return IndexPlan([keys.queue(name) for name in queues or ()], exact)
    if queues is None:
        return IndexPlan([keys.state(state) for state in states], exact)
    return IndexPlan([keys.state_queue(s, q) for s in states for q in queues], exact)


def _listed(operators: StringOperators | None) -> list[str] | None:
    """Return the only values ``operators`` accept when they are just ``eq`` and ``in``."""
    if operators is None:
        return None
    used = {name: value for name, value in operators if value is not None}
    if not used or not set(used) <= {"eq", "in_"}:
        return None
    accepted = set(used["in_"]) if "in_" in used else {used["eq"]}
    if "eq" in used:
        accepted &= {used["eq"]}
    return sorted(accepted)


def _passing_queues(operators: StringOperators | None, queue_names: Iterable[str]) -> list[str]:
    """Return the names of ``queue_names`` that pass ``operators``, tested one by one."""
    only = JobFilter(queue_name=operators)
    probe = Job.model_construct(queue_name="")
    passing = []
    for name in queue_names:
        probe.queue_name = name
        if matches(probe, only):
            passing.append(name)
    return sorted(passing)


def _passing_states(state_filter: JobFilter, loose: bool) -> list[str]:
    """Return the states a job passing ``state_filter`` (on state and is_settled) can be in.

    A job in a settled state is settled when it has ``settled_at``; ``loose`` also counts those
    without it, so the answer holds even when such jobs exist.
    """
    probe = Job.model_construct(queue_name="")
    passing = []
    for state in JobState:
        settled = state in SETTLED_STATES
        probe.state = state
        for stamp in (EPOCH, None) if loose and settled else (EPOCH if settled else None,):
            probe.settled_at = stamp
            if matches(probe, state_filter):
                passing.append(state.value)
                break
    return passing
