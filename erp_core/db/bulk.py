"""Many new rows of one table in one ``executemany``, prepared by us rather than per row by
SQLAlchemy.

``connection.execute(insert(table), rows)`` makes SQLAlchemy build each row's parameters from
the compiled statement and run each value through its type's processor, in several layers of
calls per row: for the dozen ledger postings of an order, about four times the time SQLite
takes to store them. :class:`RowInsert` compiles the INSERT once per dialect and set of
columns, takes each column's processor once (the same ones SQLAlchemy would use: our exact
decimals, JSON, SQLite's dates), and hands the driver the finished rows with
``exec_driver_sql``, so the engine's events still see the statement.

What it writes is what ``execute(insert(table), rows)`` writes, Python-side column defaults
included. It is a Core statement: the caller names the tenant in every row, as for any Core
statement on a tenant's table (the session's ORM scoping does not apply). Rows of one call
must name the same columns; no ids come back (use ``RETURNING`` through SQLAlchemy for that).
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from sqlalchemy import Table, insert
from sqlalchemy.engine import Connection, Dialect

_Processor = Callable[[Any], Any] | None


def _default_maker(arg: Any, *, callable_: bool) -> Callable[[], Any]:
    """A column default's value for a new row: a scalar as is; a Python function called as
    SQLAlchemy would (it wraps a function of no arguments into one taking the context)."""
    if callable_:
        return lambda: arg(None)
    return lambda: arg


class _Plan:
    """The INSERT for one dialect and set of columns: its SQL, and how a row becomes the
    driver's parameters."""

    def __init__(self, table: Table, dialect: Dialect, keys: tuple[str, ...]) -> None:
        defaults: list[tuple[str, Callable[[], Any]]] = []
        for col in table.columns:
            default = col.default
            if col.key in keys or default is None or getattr(col, "_insert_sentinel", False):
                continue
            if not (default.is_scalar or default.is_callable):
                raise ValueError(f"{table.name}.{col.key}: a default RowInsert cannot compute")
            arg: Any = default.arg  # type: ignore[attr-defined]
            defaults.append((col.key, _default_maker(arg, callable_=bool(default.is_callable))))
        self.defaults = defaults
        names = keys + tuple(k for k, _ in defaults)
        compiled = insert(table).inline().compile(dialect=dialect, column_keys=list(names))
        self.sql = str(compiled)
        self.positional = bool(compiled.positional)
        order = list(compiled.positiontup or ()) if self.positional else list(names)
        unknown = set(order) - set(names)
        if unknown:  # pragma: no cover - an INSERT binds its columns by their keys
            raise ValueError(f"{table.name}: unexpected parameters {sorted(unknown)}")
        self.order = order
        self.processors: list[_Processor] = [
            table.c[k].type.dialect_impl(dialect).bind_processor(dialect) for k in order
        ]

    def params(self, rows: Sequence[Mapping[str, Any]]) -> list[Any]:
        order, procs = self.order, self.processors
        if self.defaults:
            rows = [{**r, **{k: make() for k, make in self.defaults}} for r in rows]
        pairs = list(zip(order, procs, strict=True))
        if self.positional:
            return [tuple(r[k] if p is None else p(r[k]) for k, p in pairs) for r in rows]
        return [{k: r[k] if p is None else p(r[k]) for k, p in pairs} for r in rows]


class RowInsert:
    """``RowInsert(table)(connection, rows)``: insert ``rows`` (dicts of column keys, all
    naming the same columns) into ``table``; see the module's docstring."""

    def __init__(self, table: Table) -> None:
        self.table = table
        # per dialect (an engine's: its options shape the processors), per set of columns
        self._plans: weakref.WeakKeyDictionary[Dialect, dict[tuple[str, ...], _Plan]] = (
            weakref.WeakKeyDictionary()
        )

    def __call__(self, connection: Connection, rows: Sequence[Mapping[str, Any]]) -> None:
        if not rows:
            return
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
        plan = plans.get(keys)
        if plan is None:
            plan = plans[keys] = _Plan(self.table, dialect, keys)
        connection.exec_driver_sql(plan.sql, plan.params(rows))


class _StatementPlan:
    """A Core statement with bound parameters, compiled for one dialect: its SQL, and per
    placeholder the parameter's name, processor and value when the statement holds it."""

    def __init__(self, stmt: Any, dialect: Dialect) -> None:
        compiled = stmt.compile(dialect=dialect)
        self.sql = str(compiled)
        self.positional = bool(compiled.positional)
        by_name = {name: bind for bind, name in compiled.bind_names.items()}
        names = list(compiled.positiontup or ()) if self.positional else list(by_name)
        self.slots: list[tuple[str, _Processor, bool, Any]] = []
        for name in names:
            bind = by_name[name]
            if bind.expanding:
                raise ValueError(f"RowStatement: {name!r} is an expanding parameter")
            proc = bind.type.dialect_impl(dialect).bind_processor(dialect)
            given = bind.required  # named at each execution; else a value the statement holds
            fixed = None
            if not given:
                value = bind.effective_value
                fixed = proc(value) if proc is not None else value
            self.slots.append((name, proc, given, fixed))

    def params(self, rows: Sequence[Mapping[str, Any]]) -> list[Any]:
        slots = self.slots
        if self.positional:
            return [
                tuple(
                    (r[n] if p is None else p(r[n])) if given else fixed
                    for n, p, given, fixed in slots
                )
                for r in rows
            ]
        return [
            {
                n: (r[n] if p is None else p(r[n])) if given else fixed
                for n, p, given, fixed in slots
            }
            for r in rows
        ]


class RowStatement:
    """``RowStatement(stmt)(connection, rows)``: a Core statement built with
    ``bindparam()`` (an ``UPDATE ... WHERE id = :id``, say) run once per row of parameters in
    one ``executemany``, compiled once per dialect, its values processed by us (see the
    module's docstring). Returns the result (its ``rowcount`` counts every row changed)."""

    def __init__(self, stmt: Any) -> None:
        self.stmt = stmt
        self._plans: weakref.WeakKeyDictionary[Dialect, _StatementPlan] = (
            weakref.WeakKeyDictionary()
        )

    def __call__(self, connection: Connection, rows: Sequence[Mapping[str, Any]]) -> Any:
        if not rows:
            raise ValueError("RowStatement needs at least one row of parameters")
        dialect = connection.dialect
        plan = self._plans.get(dialect)
        if plan is None:
            plan = self._plans[dialect] = _StatementPlan(self.stmt, dialect)
        return connection.exec_driver_sql(plan.sql, plan.params(rows))
