"""JobListOptions evaluated: the condition tree, and filtering and sorting in Python.

``adapter.listing`` says what each option means; this module is that meaning as code. The SQL
store spells the same condition tree and sort order in SQL (``adapter.store.sql.query``); stores
without SQL evaluate them here (``matches``, ``sort_jobs``, ``list_jobs``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from operator import eq, ge, gt, le, lt, ne
from typing import Any

from pydantic.alias_generators import to_camel

from adapter.job import Job
from adapter.listing import (
    JobFilter,
    JobList,
    JobListOptions,
    LogicalOperator,
    SortField,
    SortOrder,
    page_bounds,
    parse_list_options,
)
from adapter.patterns import search


@dataclass(frozen=True)
class Condition:
    """One operator of one field, for example ``queue_name`` ``contains`` ``"vid"``."""

    field: str
    operator: str
    operand: Any


@dataclass(frozen=True)
class ConditionGroup:
    """Conditions and groups combined with one logical operator."""

    operator: LogicalOperator
    conditions: tuple[Condition | ConditionGroup, ...]


def condition_tree(filter: JobFilter | None, operator: LogicalOperator) -> ConditionGroup:
    """Return the filter as Vendure's condition tree; its top level combines with ``operator``."""
    return ConditionGroup(operator, _conditions(filter) if filter is not None else ())


def _conditions(filter: JobFilter) -> tuple[Condition | ConditionGroup, ...]:
    found: list[Condition | ConditionGroup] = []
    for field, operators in filter:
        if field in ("and_", "or_") or operators is None:
            continue
        found.extend(
            Condition(field, name, operand) for name, operand in operators if operand is not None
        )
    for group_operator, members in (
        (LogicalOperator.AND, filter.and_),
        (LogicalOperator.OR, filter.or_),
    ):
        nested = tuple(condition for member in members or () for condition in _conditions(member))
        if nested:
            found.append(ConditionGroup(group_operator, nested))
    return tuple(found)


def _contains(value: str, needle: str) -> bool:
    return needle.strip().lower() in value.lower()


#: Filter operators that are plain comparisons, by name (Python and SQL both use these).
COMPARISONS: dict[str, Callable[[Any, Any], Any]] = {
    "eq": eq,
    "not_eq": ne,
    "lt": lt,
    "before": lt,
    "lte": le,
    "gt": gt,
    "after": gt,
    "gte": ge,
}

_TESTS: dict[str, Callable[[Any, Any], bool]] = {
    **COMPARISONS,
    "between": lambda value, bounds: bool(bounds.start <= value <= bounds.end),
    "contains": _contains,
    "not_contains": lambda value, needle: not _contains(value, needle),
    "in_": lambda value, options: value in options,
    "not_in": lambda value, options: value not in options,
}


def _holds(job: Job, node: Condition | ConditionGroup) -> bool:
    if isinstance(node, ConditionGroup):
        results = (_holds(job, member) for member in node.conditions)
        return all(results) if node.operator is LogicalOperator.AND else any(results)
    value = getattr(job, node.field)
    if node.operator == "is_null":
        return (value is None) is node.operand
    if node.operator in ("in_", "not_in") and not node.operand:
        return node.operator == "not_in"
    if node.operator == "regex":
        return value is not None and search(node.operand, value, to_camel(node.field))
    return value is not None and _TESTS[node.operator](value, node.operand)


def matches(
    job: Job, filter: JobFilter | None, operator: LogicalOperator = LogicalOperator.AND
) -> bool:
    """Tell whether ``job`` passes ``filter`` whose top level combines with ``operator``."""
    tree = condition_tree(filter, operator)
    return not tree.conditions or _holds(job, tree)


def sort_order(sort: Mapping[SortField, SortOrder]) -> list[tuple[SortField, SortOrder]]:
    """Return every sort key in order: the given ones (or created_at), then the id tie-breaker."""
    keys = list(sort.items()) or [(SortField.CREATED_AT, SortOrder.ASC)]
    if SortField.ID not in sort:
        keys.append((SortField.ID, SortOrder.ASC))
    return keys


def sort_key(job: Job, field: SortField) -> tuple[bool, Any]:
    """Return the key of ``job`` for ``field`` that puts a missing value before every other."""
    value = getattr(job, field.value)
    return value is not None, value


def sort_jobs(jobs: Iterable[Job], sort: Mapping[SortField, SortOrder]) -> list[Job]:
    """Return ``jobs`` sorted by ``sort`` as every store sorts them (see ``sort_order``)."""
    ordered = list(jobs)
    for field, order in reversed(sort_order(sort)):
        ordered.sort(key=lambda job: sort_key(job, field), reverse=order is SortOrder.DESC)
    return ordered


def list_jobs(jobs: Iterable[Job], options: JobListOptions | Mapping[str, Any] | None) -> JobList:
    """Answer ``find_many`` over jobs held in Python: filter, count, sort, then skip and take."""
    parsed = parse_list_options(options)
    skip, take = page_bounds(parsed)
    found = [job for job in jobs if matches(job, parsed.filter, parsed.filter_operator)]
    return JobList(items=sort_jobs(found, parsed.sort)[skip : skip + take], total_items=len(found))
