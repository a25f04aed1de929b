"""``find_many`` in SQL: JobListOptions as SQLAlchemy Core statements over the job table.

The meaning of every option is written once, in ``adapter.listing``; this module only spells it
in SQL for SQLite and PostgreSQL, so that a SQL store and ``adapter.conditions.list_jobs`` give the
same answer. Where the two databases differ:

- ``duration`` (milliseconds, as ``Job.duration``) is computed from the stored times. SQLite
  takes whole seconds from ``strftime('%s')`` and microseconds from the stored text, so the
  arithmetic is exact integers (``julianday`` is a float, off by tens of microseconds);
  PostgreSQL uses ``EXTRACT(EPOCH FROM ...)``. Jobs still running count up to one "now",
  taken once per call, so filtering and sorting agree.
- ``regex`` is ``~*`` on PostgreSQL, and on SQLite ``adapter_regexp``, the bounded search of
  ``adapter.patterns`` (registered by ``adapter.store.sql.engine``). A pattern PostgreSQL
  refuses, or a value it cannot compare, is ``InvalidListOptionsError`` (``refused``) naming
  the option, without the database's text.
- Text sorts (``id``, ``queue_name``) use the ``"C"`` collation on PostgreSQL: code point
  order, as SQLite and Python sort, whatever the database's locale.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from pydantic.alias_generators import to_camel
from sqlalchemy.sql.elements import ColumnElement

from adapter.conditions import COMPARISONS, Condition, ConditionGroup, condition_tree, sort_order
from adapter.errors import InvalidListOptionsError, StoreError
from adapter.job import STARTABLE_STATES
from adapter.listing import (
    JobFilter,
    JobListOptions,
    LogicalOperator,
    SortField,
    SortOrder,
    page_bounds,
)

#: Dialects whose ``duration`` expression this module knows.
SUPPORTED_DIALECTS = frozenset({"sqlite", "postgresql"})
#: PostgreSQL's SQLSTATE for a pattern its regular expressions cannot compile.
INVALID_REGULAR_EXPRESSION = "2201B"
#: SQLSTATE classes of a value a query cannot use: data exception, program limit exceeded.
REFUSED_SQLSTATE_CLASSES = ("22", "54")
#: Sort fields compared as text; PostgreSQL sorts them with the ``"C"`` collation.
_TEXT_SORT_FIELDS = frozenset({SortField.ID, SortField.QUEUE_NAME})
#: Sort fields that may be missing (NULL): first when ascending, last when descending.
_NULLABLE_SORT_FIELDS = frozenset({SortField.STARTED_AT, SortField.SETTLED_AT, SortField.READY_AT})


class JobListQuery:
    """The statements of one ``find_many`` call over the job table, in one SQL dialect."""

    def __init__(self, table: sa.Table, dialect: str, now: datetime) -> None:
        """Build over ``table`` (``adapter.store.sql.tables.jobs``); ``now`` ends running jobs."""
        self.table = table
        self.dialect = dialect
        self._now = now.astimezone(UTC).replace(tzinfo=None)

    def count(self, options: JobListOptions) -> sa.Select[Any]:
        """Return the SELECT of how many jobs match ``options`` before ``skip``/``take``."""
        statement = sa.select(sa.func.count()).select_from(self.table)
        clause = self.where(options.filter, options.filter_operator)
        return statement if clause is None else statement.where(clause)

    def page(self, options: JobListOptions) -> sa.Select[Any]:
        """Return the SELECT of the jobs of one page: filtered, sorted, then skipped and taken."""
        skip, take = page_bounds(options)
        statement = sa.select(self.table)
        clause = self.where(options.filter, options.filter_operator)
        if clause is not None:
            statement = statement.where(clause)
        return statement.order_by(*self.order_by(options.sort)).offset(skip).limit(take)

    def where(
        self, filter: JobFilter | None, operator: LogicalOperator
    ) -> ColumnElement[bool] | None:
        """Return the WHERE clause of ``filter``, or None when it has no conditions."""
        tree = condition_tree(filter, operator)
        return self._group(tree) if tree.conditions else None

    def order_by(self, sort: Mapping[SortField, SortOrder]) -> list[ColumnElement[Any]]:
        """Return the ORDER BY terms: the sort keys, then ``id``; missing times first when ASC."""
        terms: list[ColumnElement[Any]] = []
        for field, order in sort_order(sort):
            column = self._sort_column(field)
            ascending = order is SortOrder.ASC
            term = column.asc() if ascending else column.desc()
            if field in _NULLABLE_SORT_FIELDS:
                term = term.nulls_first() if ascending else term.nulls_last()
            terms.append(term)
        return terms

    def duration_ms(self) -> ColumnElement[int]:
        """Return ``Job.duration`` as SQL: 0 while startable, else settled (or now) - started."""
        if self.dialect not in SUPPORTED_DIALECTS:
            raise StoreError(
                f"duration is not supported on {self.dialect}; use SQLite or PostgreSQL"
            )
        columns = self.table.c
        now = sa.literal(self._now, sa.DateTime())
        end = sa.func.coalesce(columns.settled_at, now)
        start = sa.func.coalesce(columns.started_at, columns.settled_at, now)
        if self.dialect == "sqlite":
            elapsed = sa.cast((_sqlite_epoch_us(end) - _sqlite_epoch_us(start)) / 1000, sa.Integer)
        else:
            epoch = sa.extract("epoch", end - start)
            elapsed = sa.cast(sa.func.trunc(epoch * 1000), sa.BigInteger)
        startable = columns.state.in_(sorted(state.value for state in STARTABLE_STATES))
        return sa.case((startable, 0), else_=elapsed)

    def refused(
        self, err: sa.exc.DBAPIError, options: JobListOptions
    ) -> InvalidListOptionsError | None:
        """Return the error naming the option the database refused in ``err``, if it was one."""
        sqlstate = str(getattr(err.orig, "sqlstate", "") or "")
        if sqlstate == INVALID_REGULAR_EXPRESSION:
            patterns = [
                f"filter.{to_camel(node.field)}.regex {node.operand!r}"
                for node in _leaves(condition_tree(options.filter, options.filter_operator))
                if node.operator == "regex"
            ]
            return InvalidListOptionsError(
                f"{', '.join(patterns)}: PostgreSQL cannot use this pattern (valid in Python, "
                "not in PostgreSQL's regular expressions)"
            )
        if sqlstate.startswith(REFUSED_SQLSTATE_CLASSES):
            return InvalidListOptionsError(
                f"filter: a value PostgreSQL cannot compare (SQLSTATE {sqlstate})"
            )
        return None

    def _group(self, group: ConditionGroup) -> ColumnElement[bool]:
        clauses = [
            self._group(member) if isinstance(member, ConditionGroup) else self._clause(member)
            for member in group.conditions
        ]
        return sa.and_(*clauses) if group.operator is LogicalOperator.AND else sa.or_(*clauses)

    def _column(self, field: str) -> ColumnElement[Any]:
        return self.duration_ms() if field == "duration" else self.table.c[field]

    def _sort_column(self, field: SortField) -> ColumnElement[Any]:
        column = self._column(field.value)
        if self.dialect == "postgresql" and field in _TEXT_SORT_FIELDS:
            return column.collate("C")
        return column

    def _clause(self, condition: Condition) -> ColumnElement[bool]:
        column = self._column(condition.field)
        operator, operand = condition.operator, _sql_value(condition.operand)
        clause: ColumnElement[bool]
        if operator in COMPARISONS:
            clause = COMPARISONS[operator](column, operand)
        elif operator == "between":
            clause = column.between(_sql_value(operand.start), _sql_value(operand.end))
        elif operator in ("contains", "not_contains"):
            clause = column.icontains(operand.strip(), autoescape=True)
            clause = clause if operator == "contains" else sa.not_(clause)
        elif operator == "in_":
            clause = column.in_(operand)
        elif operator == "not_in":
            clause = column.not_in(operand)
        elif operator == "regex" and self.dialect == "postgresql":
            clause = column.regexp_match(operand, flags="i")
        elif operator == "regex":
            field = to_camel(condition.field)
            clause = sa.func.adapter_regexp(operand, column, field, type_=sa.Integer) == 1
        elif operator == "is_null":
            clause = column.is_(None) if operand else column.is_not(None)
        else:
            raise AssertionError(f"no SQL for operator {operator!r}")
        return clause


def _leaves(group: ConditionGroup) -> list[Condition]:
    """Return every condition of ``group`` and its nested groups, in order."""
    found: list[Condition] = []
    for node in group.conditions:
        found.extend(_leaves(node) if isinstance(node, ConditionGroup) else [node])
    return found


def _sql_value(value: Any) -> Any:
    """Return ``value`` as the job table stores it: times as naive UTC."""
    if isinstance(value, datetime):
        return value.astimezone(UTC).replace(tzinfo=None)
    return value


def _sqlite_epoch_us(value: ColumnElement[Any]) -> ColumnElement[int]:
    """Return microseconds since 1970 of a time stored as ``YYYY-MM-DD HH:MM:SS.ffffff``."""
    seconds = sa.cast(sa.func.strftime("%s", value), sa.Integer)
    microseconds = sa.cast(sa.func.substr(value, 21, 6), sa.Integer)
    return seconds * 1_000_000 + microseconds
