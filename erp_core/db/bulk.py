"""Many new rows of one table in one ``executemany``, prepared by us rather than per row by
SQLAlchemy.

``connection.execute(insert(table), rows)`` makes SQLAlchemy build each row's parameters from
the compiled statement and run each value through its type's processor, in several layers of
calls per row: for the dozen ledger postings of an order, about four times the time SQLite
takes to store them. :class:`RowInsert` compiles the INSERT once per dialect and set of
columns, takes each column's processor once (the same ones SQLAlchemy would use: our exact
decimals, JSON, SQLite's dates), and hands the driver the finished rows in one
``executemany`` on its cursor (``erp_core.db.direct.on_cursor``: the engine's cursor events
still see the statement, and a driver error is raised as SQLAlchemy's).

What it writes is what ``execute(insert(table), rows)`` writes, Python-side column defaults
included. It is a Core statement: the caller names the tenant in every row, as for any Core
statement on a tenant's table (the session's ORM scoping does not apply). Rows of one call
must name the same columns; no ids come back (use ``RETURNING`` through SQLAlchemy for that).
"""

from __future__ import annotations

import functools
import weakref
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple, cast

from sqlalchemy import Table, insert
from sqlalchemy.engine import Connection, Dialect

from erp_core.db.direct import on_cursor

_Processor = Callable[[Any], Any] | None

#: Up to this many rows, :meth:`RowInsert.ids` (one statement per row, on the driver's cursor)
#: costs less than SQLAlchemy's multi-row ``INSERT ... RETURNING``, even with PostgreSQL's
#: round trip per statement.
FEW_ROWS = 4


class _Slot(NamedTuple):
    """One parameter of a statement: named ``name`` for the driver, taken from the row's
    ``key`` and run through ``proc``; or, with ``key`` None, ``fixed`` (already processed) or,
    when ``make`` is given, ``proc(make())`` for each row."""

    name: str
    key: str | None
    proc: _Processor = None
    fixed: Any = None
    make: Callable[[], Any] | None = None


def _row_builder(
    slots: Sequence[_Slot], *, positional: bool
) -> Callable[[Sequence[Mapping[str, Any]]], list[Any]]:
    """A function turning rows into the driver's parameters (tuples when ``positional``,
    else dicts), written out for these slots so that a row costs one expression rather than
    a loop over its values."""
    names: dict[str, Any] = {}
    parts = []
    for i, slot in enumerate(slots):
        if slot.key is not None:
            expr = f"r[{slot.key!r}]"
        elif slot.make is not None:
            names[f"m{i}"] = slot.make
            expr = f"m{i}()"
        else:
            names[f"c{i}"] = slot.fixed
            parts.append(f"c{i}" if positional else f"{slot.name!r}: c{i}")
            continue
        if slot.proc is not None:
            names[f"p{i}"] = slot.proc
            expr = f"p{i}({expr})"
        parts.append(expr if positional else f"{slot.name!r}: {expr}")
    body = f"({', '.join(parts)},)" if positional else "{" + ", ".join(parts) + "}"
    source = f"def build(rows):\n    return [{body} for r in rows]\n"
    exec(compile(source, "<erp_core.db.bulk>", "exec"), names)  # our own source, keys by repr
    return cast(Callable[[Sequence[Mapping[str, Any]]], list[Any]], names["build"])


class _Plan:
    """The INSERT for one dialect and set of columns: its SQL, and how a row becomes the
    driver's parameters."""

    def __init__(
        self, table: Table, dialect: Dialect, keys: tuple[str, ...], returning: Any = None
    ) -> None:
        defaults: dict[str, tuple[Any, bool]] = {}
        for col in table.columns:
            default = col.default
            if col.key in keys or default is None or getattr(col, "_insert_sentinel", False):
                continue
            if not (default.is_scalar or default.is_callable):
                raise ValueError(f"{table.name}.{col.key}: a default RowInsert cannot compute")
            defaults[col.key] = (default.arg, bool(default.is_callable))  # type: ignore[attr-defined]
        names = keys + tuple(defaults)
        stmt = insert(table).inline()
        if returning is not None:
            stmt = stmt.returning(returning)
        compiled = stmt.compile(dialect=dialect, column_keys=list(names))
        self.sql = str(compiled)
        positional = bool(compiled.positional)
        order = list(compiled.positiontup or ()) if positional else list(names)
        unknown = set(order) - set(names)
        if unknown:  # pragma: no cover - an INSERT binds its columns by their keys
            raise ValueError(f"{table.name}: unexpected parameters {sorted(unknown)}")
        slots = []
        for k in order:
            proc = table.c[k].type.dialect_impl(dialect).bind_processor(dialect)
            if k not in defaults:
                slots.append(_Slot(k, k, proc))
                continue
            arg, callable_ = defaults[k]
            if callable_:  # SQLAlchemy wraps a function of no arguments into one of the context
                slots.append(_Slot(k, None, proc, make=functools.partial(arg, None)))
            else:
                slots.append(_Slot(k, None, fixed=proc(arg) if proc is not None else arg))
        self.params = _row_builder(slots, positional=positional)


class RowInsert:
    """``RowInsert(table)(connection, rows)``: insert ``rows`` (dicts of column keys, all
    naming the same columns) into ``table``; see the module's docstring."""

    def __init__(self, table: Table) -> None:
        self.table = table
        # per dialect (an engine's: its options shape the processors), per set of columns and
        # whether the ids come back
        self._plans: weakref.WeakKeyDictionary[
            Dialect, dict[tuple[tuple[str, ...], bool], _Plan]
        ] = weakref.WeakKeyDictionary()

    def _plan(self, connection: Connection, rows: Sequence[Mapping[str, Any]], ids: bool) -> _Plan:
        keys = tuple(rows[0])
        names = set(keys)
        for r in rows:
            if r.keys() != names:
                raise ValueError(
                    f"rows for {self.table.name} must name the same columns: "
                    f"{sorted(keys)} and {sorted(r)}"
                )
        dialect = connection.dialect
        plans = self._plans.get(dialect)
        if plans is None:
            plans = self._plans[dialect] = {}
        plan = plans.get((keys, ids))
        if plan is None:
            pk = next(iter(self.table.primary_key.columns)) if ids else None
            plan = plans[(keys, ids)] = _Plan(self.table, dialect, keys, returning=pk)
        return plan

    def __call__(self, connection: Connection, rows: Sequence[Mapping[str, Any]]) -> None:
        if not rows:
            return
        plan = self._plan(connection, rows, False)
        on_cursor(connection, plan.sql, plan.params(rows), many=True)

    def ids(self, connection: Connection, rows: Sequence[Mapping[str, Any]]) -> list[int]:
        """Insert ``rows`` as ``__call__`` does, one statement each (``INSERT ... RETURNING``),
        and give their ids (the primary key) in the order of ``rows``. For a few rows: one
        statement per row costs a round trip each on PostgreSQL."""
        if not rows:
            return []
        plan = self._plan(connection, rows, True)
        ids: list[int] = []
        on_cursor(connection, plan.sql, plan.params(rows), firsts=ids)
        return ids


class Changed(NamedTuple):
    """What a :class:`RowStatement` did: the rows it changed, all its executions together."""

    rowcount: int


class _StatementPlan:
    """A Core statement with bound parameters, compiled for one dialect: its SQL, and per
    placeholder the parameter's name, processor and value when the statement holds it."""

    def __init__(self, stmt: Any, dialect: Dialect) -> None:
        compiled = stmt.compile(dialect=dialect)
        self.sql = str(compiled)
        by_name = {name: bind for bind, name in compiled.bind_names.items()}
        positional = bool(compiled.positional)
        names = list(compiled.positiontup or ()) if positional else list(by_name)
        slots = []
        for name in names:
            bind = by_name[name]
            if bind.expanding:
                raise ValueError(f"RowStatement: {name!r} is an expanding parameter")
            proc = bind.type.dialect_impl(dialect).bind_processor(dialect)
            if bind.required:  # named at each execution
                slots.append(_Slot(name, name, proc))
            else:  # a value the statement holds
                value = bind.effective_value
                slots.append(_Slot(name, None, fixed=proc(value) if proc is not None else value))
        self.params = _row_builder(slots, positional=positional)


class RowStatement:
    """``RowStatement(stmt)(connection, rows)``: a Core statement built with
    ``bindparam()`` (an ``UPDATE ... WHERE id = :id``, say) run once per row of parameters in
    one ``executemany``, compiled once per dialect, its values processed by us (see the
    module's docstring). Returns :class:`Changed` (its ``rowcount`` counts every row changed)."""

    def __init__(self, stmt: Any) -> None:
        self.stmt = stmt
        self._plans: weakref.WeakKeyDictionary[Dialect, _StatementPlan] = (
            weakref.WeakKeyDictionary()
        )

    def __call__(self, connection: Connection, rows: Sequence[Mapping[str, Any]]) -> Changed:
        if not rows:
            raise ValueError("RowStatement needs at least one row of parameters")
        dialect = connection.dialect
        plan = self._plans.get(dialect)
        if plan is None:
            plan = self._plans[dialect] = _StatementPlan(self.stmt, dialect)
        return Changed(on_cursor(connection, plan.sql, plan.params(rows), many=True))
