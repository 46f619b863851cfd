"""Core statements run on the driver's cursor, for the hot paths where SQLAlchemy's work per
execution costs more than the database's.

``connection.execute(stmt, params)`` looks the statement's compiled form up by its cache key,
builds an execution context, processes every parameter (rendering an ``IN`` list's
placeholders anew each time) and wraps the cursor in a result: about 90 us for a one-row
``SELECT`` on SQLite that the driver answers in under 10. :class:`Direct` compiles the
statement once per dialect, turns each shape of its ``IN`` lists (their lengths) into the
final SQL once, and at each execution only processes the values (with the types' own
processors, as SQLAlchemy would) and calls the cursor.

What still happens as for any statement: it runs in the connection's transaction (take the
connection from ``session.connection()``: on PostgreSQL that is where the tenant is set), the
engine's ``before_cursor_execute`` and ``after_cursor_execute`` listeners see it (with no
execution context), and a driver error is raised as SQLAlchemy's exception (``IntegrityError``
and so on). What does not: ``echo`` logging, the ORM (a Core statement filters its tenant
itself, like any Core statement on a tenant's table) and autoflush (flush first when the
session may hold changes the statement must see).

Statements take their parameters by name; a name may not need escaping (plain identifiers).
"""

from __future__ import annotations

import weakref
from collections import namedtuple
from collections.abc import Callable, Mapping, Sequence
from typing import Any, cast

from sqlalchemy import event
from sqlalchemy.engine import Connection, Dialect
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import set_committed_value
from sqlalchemy.orm.base import instance_state

_Params = Callable[[Mapping[str, Any]], Any]
_Row = Callable[[Any], tuple[Any, ...]]


def _params_builder(exprs: Sequence[str], names: Sequence[str], env: dict[str, Any]) -> _Params:
    """A function of the execution's parameters giving the driver's: a tuple of ``exprs``
    (positional, when ``names`` is empty) or a dict of ``names`` to them."""
    if names:
        body = "{" + ", ".join(f"{n!r}: {e}" for n, e in zip(names, exprs, strict=True)) + "}"
    else:
        body = f"({', '.join(exprs)},)" if exprs else "()"
    source = f"def build(r):\n    return {body}\n"
    exec(compile(source, "<erp_core.db.direct>", "exec"), env)  # our own source
    return cast(_Params, env["build"])


def _row_builder(procs: Sequence[Callable[[Any], Any] | None], cls: type) -> _Row:
    """A function making one row of the cursor's into a ``cls``, its values processed."""
    if not any(procs):
        return cast(_Row, cls._make)  # type: ignore[attr-defined]
    env: dict[str, Any] = {"R": cls}
    parts = []
    for i, proc in enumerate(procs):
        if proc is None:
            parts.append(f"t[{i}]")
        else:
            env[f"p{i}"] = proc
            parts.append(f"p{i}(t[{i}])")
    source = f"def row(t):\n    return R({', '.join(parts)})\n"
    exec(compile(source, "<erp_core.db.direct>", "exec"), env)  # our own source
    return cast(_Row, env["row"])


class _Variant:
    """The statement with its ``IN`` lists of given lengths: its SQL and how the execution's
    parameters become the driver's."""

    def __init__(self, plan: _Plan, lengths: tuple[int, ...]) -> None:
        compiled = plan.compiled
        dummy: dict[str, Any] = {name: None for name in plan.required}
        for name, n in zip(plan.lists, lengths, strict=True):
            dummy[name] = [None] * n
        expanded = compiled.construct_expanded_state(dummy)
        self.sql: str = expanded.statement
        element: dict[str, tuple[str, int]] = {}
        for base, new_names in expanded.parameter_expansion.items():
            for i, new in enumerate(new_names):
                element[new] = (base, i)
        positional = bool(compiled.positional)
        order = list(expanded.positiontup or ()) if positional else list(expanded.parameters)
        env: dict[str, Any] = {}
        exprs: list[str] = []
        for k, name in enumerate(order):
            base, index = element.get(name, (name, -1))
            proc = plan.procs.get(base)
            if base in plan.required:
                expr = f"r[{base!r}]" if index < 0 else f"r[{base!r}][{index}]"
                if proc is not None:
                    env[f"p{k}"] = proc
                    expr = f"p{k}({expr})"
            else:  # a value the statement holds (or one of its list)
                value = expanded.parameters[name]
                env[f"c{k}"] = proc(value) if proc is not None else value
                expr = f"c{k}"
            exprs.append(expr)
        self.params = _params_builder(exprs, [] if positional else order, env)


class _Plan:
    """The statement compiled for one dialect."""

    def __init__(self, stmt: Any, dialect: Dialect) -> None:
        compiled: Any = stmt.compile(dialect=dialect)
        if compiled.escaped_bind_names:
            raise ValueError(
                f"Direct: parameter names need escaping: {compiled.escaped_bind_names}"
            )
        computed = [*compiled.insert_prefetch, *compiled.update_prefetch]
        if computed:  # SQLAlchemy's execution computes them; the driver would be given None
            names = ", ".join(sorted(str(c.key) for c in computed))
            raise ValueError(f"Direct: name the columns with Python-side defaults: {names}")
        self.compiled = compiled
        self.dialect = dialect
        by_name = {name: bind for bind, name in compiled.bind_names.items()}
        #: the names the execution gives, and those of them that are lists (an ``IN``'s)
        self.required = frozenset(n for n, b in by_name.items() if b.required)
        self.lists = tuple(sorted(n for n in self.required if by_name[n].expanding))
        self.procs = {
            n: b.type.dialect_impl(dialect).bind_processor(dialect) for n, b in by_name.items()
        }
        columns = list(getattr(stmt, "exported_columns", ()))
        self.columns = [c.type for c in columns]
        #: rows are named tuples: ``row.sku_id`` as on SQLAlchemy's rows
        self.cls = namedtuple("Row", [str(c.key) for c in columns], rename=True)  # type: ignore[misc]
        self.variants: dict[tuple[int, ...], _Variant] = {}
        self.row: _Row | None = None

    def variant(self, params: Mapping[str, Any]) -> _Variant:
        lengths = tuple(len(params[n]) for n in self.lists)
        found = self.variants.get(lengths)
        if found is None:
            if len(self.variants) >= 64:  # lists of many lengths: keep the latest ones
                self.variants.pop(next(iter(self.variants)))
            found = self.variants[lengths] = _Variant(self, lengths)
        return found

    def learn_rows(self, description: Any) -> None:
        """The rows' processors, once: the driver's type codes (PostgreSQL's) choose them."""
        if len(self.columns) != len(description or ()):  # a text() statement's: as they come
            self.row = tuple
            return
        procs = [
            t.dialect_impl(self.dialect).result_processor(self.dialect, d[1])
            for t, d in zip(self.columns, description or (), strict=False)
        ]
        self.row = _row_builder(procs, self.cls)


class Direct:
    """``Direct(stmt)``: a Core statement with bound parameters, run on the driver's cursor
    (see the module's docstring). ``rows``, ``first`` and ``scalars`` give its rows as
    tuples named by the columns' keys (values processed as SQLAlchemy would); ``run`` gives
    the number of rows it changed."""

    def __init__(self, stmt: Any) -> None:
        self.stmt = stmt
        self._plans: weakref.WeakKeyDictionary[Dialect, _Plan] = weakref.WeakKeyDictionary()

    def _plan(self, conn: Connection) -> _Plan:
        dialect = conn.dialect
        plan = self._plans.get(dialect)
        if plan is None:
            plan = self._plans[dialect] = _Plan(self.stmt, dialect)
        return plan

    def _execute(
        self, conn: Connection, params: Mapping[str, Any], fetch: bool
    ) -> tuple[list[Any], int]:
        plan = self._plan(conn)
        variant = plan.variant(params)
        if not fetch:
            return [], on_cursor(conn, variant.sql, variant.params(params))
        rows: list[Any] = []
        rowcount = on_cursor(conn, variant.sql, variant.params(params), plan=plan, into=rows)
        return rows, rowcount

    def rows(self, conn: Connection, params: Mapping[str, Any]) -> list[Any]:
        return self._execute(conn, params, True)[0]

    def first(self, conn: Connection, params: Mapping[str, Any]) -> Any:
        rows = self._execute(conn, params, True)[0]
        return rows[0] if rows else None

    def scalars(self, conn: Connection, params: Mapping[str, Any]) -> list[Any]:
        return [t[0] for t in self._execute(conn, params, True)[0]]

    def run(self, conn: Connection, params: Mapping[str, Any]) -> int:
        """Run a statement that returns no rows; the number of rows it changed."""
        return self._execute(conn, params, False)[1]

    def many(self, conn: Connection, rows: Sequence[Mapping[str, Any]]) -> int:
        """Run a statement that returns no rows (and has no ``IN`` list to be given) once per
        row of parameters, in one ``executemany``; the number of rows it changed."""
        if not rows:
            return 0
        plan = self._plan(conn)
        if plan.lists:
            raise ValueError("Direct.many: the statement has lists to be given")
        variant = plan.variant({})
        build = variant.params
        return on_cursor(conn, variant.sql, [build(r) for r in rows], many=True)


def on_cursor(
    conn: Connection,
    sql: str,
    args: Any,
    *,
    many: bool = False,
    plan: _Plan | None = None,
    into: list[Any] | None = None,
    firsts: list[Any] | None = None,
) -> int:
    """Run ``sql`` with the driver's ``args`` (a list of them when ``many``) on a cursor of
        ``conn``: the engine's cursor events fired around it, a driver error raised as
        SQLAlchemy's. With ``into``, the rows (as ``plan`` makes them, else as the driver gives
    them) are added to it. With
        ``firsts``, ``args`` is a list of parameter sets run one after the other, the first value
        of each one's first row (as the driver gives it) added to ``firsts``. The number of rows
        changed."""
    dbapi_conn: Any = conn.connection
    cursor = dbapi_conn.cursor()
    try:
        if firsts is not None:
            for one in args:
                for fn in conn.dispatch.before_cursor_execute:
                    sql, one = fn(conn, cursor, sql, one, None, False)
                cursor.execute(sql, one)
                for fn in conn.dispatch.after_cursor_execute:
                    fn(conn, cursor, sql, one, None, False)
                firsts.append(cursor.fetchone()[0])
            return len(firsts)
        if many and len(args) == 1:
            # one row: a plain execute (psycopg's executemany enters its pipeline mode, which
            # costs about 120 µs more on loopback)
            many, args = False, args[0]
        for fn in conn.dispatch.before_cursor_execute:
            sql, args = fn(conn, cursor, sql, args, None, many)
        if many:
            cursor.executemany(sql, args)
        else:
            cursor.execute(sql, args)
        for fn in conn.dispatch.after_cursor_execute:
            fn(conn, cursor, sql, args, None, many)
        if into is not None:
            if plan is None:
                into.extend(cursor.fetchall())
                return int(cursor.rowcount)
            if plan.row is None:
                plan.learn_rows(cursor.description)
            into.extend(map(plan.row, cursor.fetchall()))  # type: ignore[arg-type]
        return int(cursor.rowcount)
    except conn.dialect.loaded_dbapi.Error as exc:
        from erp_core.db.session import GUC_KNOWN  # (that module imports this one's users)

        conn.info[GUC_KNOWN] = None  # as after any error: the tenant settings are unknown
        lost = conn.dialect.is_disconnect(exc, dbapi_conn, cursor)
        if lost:
            conn.invalidate(exc)
        raise DBAPIError.instance(
            sql,
            args,
            exc,
            conn.dialect.loaded_dbapi.Error,
            connection_invalidated=lost,
            dialect=conn.dialect,
        ) from exc
    finally:
        cursor.close()


def flushed_connection(session: Session) -> Connection:
    """The session's connection, after the flush an ORM query would make first (none inside
    ``no_autoflush``): for a :class:`Direct` read that must see the session's changes."""
    if session.autoflush:
        session.flush()
    return session.connection()


# --- objects whose rows a Core statement wrote ---------------------------------------------------

#: ``Session.info`` key: ``[(transaction, object)]`` recorded by :func:`written`
_WRITTEN = "erp_written"


def written(session: Session, obj: Any, values: Mapping[str, Any]) -> None:
    """Tell the session that the caller's own statement (a :class:`Direct` ``UPDATE``, say)
    just wrote ``values`` to the row of ``obj``, a persistent object of the session: they are
    set on the object as what the database holds, so no flush writes them again (a flush of
    one changed object costs about half a millisecond; the statement a few dozen µs). A
    pending change of one of these attributes is dropped; the object's other pending changes
    stay pending.

    Should a savepoint that was open when the row was written be rolled back (or the
    transaction), the object is expired and read again when next used, as SQLAlchemy expires
    what a rolled-back savepoint's flushes changed. Write the row before calling this, in the
    session's transaction, with the tenant in the statement's ``WHERE``."""
    state = instance_state(obj)
    if not state.persistent or state.session_id != session.hash_key:
        raise ValueError(f"{obj!r} is not a persistent object of this session")
    for key, value in values.items():
        set_committed_value(obj, key, value)
    if not state.committed_state and "_pending_mutations" not in state.__dict__:
        # nothing else of it is pending: clean again, as after a flush, so that the next flush
        # does not visit it (the session still counts an object changed once as dirty)
        state._commit_all(state.dict, session.identity_map)
    txn = session.get_nested_transaction() or session.get_transaction()
    session.info.setdefault(_WRITTEN, []).append((txn, obj))


@event.listens_for(Session, "after_soft_rollback")
def _undo_written(session: Session, previous_transaction: Any) -> None:
    rows = session.info.get(_WRITTEN)
    if not rows:
        return
    kept = []
    for txn, obj in rows:
        t = txn
        while t is not None and t is not previous_transaction:
            t = t.parent
        if t is None:  # written outside what was rolled back
            kept.append((txn, obj))
        elif instance_state(obj).session_id == session.hash_key:
            session.expire(obj)
    session.info[_WRITTEN] = kept


@event.listens_for(Session, "after_transaction_end")
def _forget_written(session: Session, transaction: Any) -> None:
    if transaction.parent is None:
        session.info.pop(_WRITTEN, None)


# --- objects of rows read on the cursor ----------------------------------------------------------


class _Loading:
    """How rows of one model's table become its objects (worked out once per model)."""

    def __init__(self, cls: type[Any]) -> None:
        from sqlalchemy import inspect as sa_inspect
        from sqlalchemy.orm.util import identity_key

        mapper: Any = sa_inspect(cls)
        mapped = {id(c) for c in mapper.columns}  # (a bulk-insert sentinel is not mapped)
        #: the table's mapped columns in its order, and their attributes
        self.columns = [c for c in mapper.local_table.c if id(c) in mapped]
        self.keys = [mapper.get_property_by_column(c).key for c in self.columns]
        pk = list(mapper.local_table.primary_key.columns)
        if len(pk) != 1:
            raise ValueError(f"loaded: {cls.__name__} needs a one-column primary key")
        self.pk = self.columns.index(pk[0])
        self.new = mapper.class_manager.new_instance
        self.klass, _, self.token = identity_key(cls, 0)
        self.names = frozenset(self.keys)


_LOADINGS: dict[type[Any], _Loading] = {}


def _loading(cls: type[Any]) -> _Loading:
    plan = _LOADINGS.get(cls)
    if plan is None:
        plan = _LOADINGS[cls] = _Loading(cls)
    return plan


def loaded_columns(cls: type[Any]) -> list[Any]:
    """The columns to select for :func:`loaded`: the model's mapped columns, in its table's
    order."""
    return list(_loading(cls).columns)


def loaded(session: Session, cls: type[Any], rows: Sequence[Any]) -> list[Any]:
    """The objects of ``cls`` for ``rows`` read with :class:`Direct` (the columns
    :func:`loaded_columns` gives, in its order), in the session as an ORM
    query would have loaded them: persistent, unchanged, their relationships loaded when
    first used. It costs a fraction of an ORM query's work per execution (about half a
    millisecond on SQLite for one row). As with a query, a row whose object the session holds
    already gives that object, its pending changes kept (its expired columns take the row's
    values). The rows must be the session's tenant's: the statement filters them itself."""
    plan = _loading(cls)
    from sqlalchemy.orm import make_transient_to_detached

    idmap = session.identity_map
    out = []
    for row in rows:
        held = idmap.get((plan.klass, (row[plan.pk],), plan.token))
        if held is not None:
            state = instance_state(held)
            for key in state.expired_attributes & plan.names:
                set_committed_value(held, key, row[plan.keys.index(key)])
            out.append(held)
            continue
        obj = plan.new()
        values = instance_state(obj).dict
        for key, value in zip(plan.keys, row, strict=True):
            values[key] = value
        make_transient_to_detached(obj)  # its identity, its other attributes to load on use
        session.add(obj)
        out.append(obj)
    return out
