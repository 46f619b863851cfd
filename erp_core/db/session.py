"""Engines, sessions and the automatic tenant filter."""

from __future__ import annotations

import functools
import weakref
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from sqlalchemy import BigInteger, Table, bindparam, create_engine, event, select, text, tuple_
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import ORMExecuteState, Session, sessionmaker, with_loader_criteria
from sqlalchemy.pool import QueuePool
from sqlalchemy.sql import coercions, roles, visitors
from sqlalchemy.sql.elements import ColumnElement
from sqlalchemy.sql.visitors import InternalTraversal

from erp_core.db import cache
from erp_core.db.base import TenantScoped
from erp_core.db.direct import on_cursor
from erp_core.tenancy.context import CrossTenantError, NoTenantError, current_tenant_id

TENANT_KEY = cache.TENANT_KEY
SYSTEM_KEY = "erp_system"
REGISTRY_KEY = "erp_registry"


def session_tenant(session: Session) -> int | None:
    tid = session.info.get(TENANT_KEY)
    return tid if tid is not None else current_tenant_id()


def _is_postgres(session: Session) -> bool:
    bind = session.get_bind()
    return bind.dialect.name == "postgresql"


_GUC_LOCAL = text(
    "SELECT set_config('erp.tenant_id', :t, true), set_config('erp.all_tenants', :s, true)"
)
_NEUTRAL_SQL = (
    "SELECT set_config('erp.tenant_id', '', false), set_config('erp.all_tenants', 'off', false)"
)
_GUC_SESSION = text(
    "SELECT set_config('erp.tenant_id', :t, false), set_config('erp.all_tenants', :s, false)"
)
#: ``Connection.info`` keys (the info of the pooled DBAPI connection, kept across check-outs):
#: the (tenant, system) settings the connection is known to carry outside a transaction, and
#: whether the current transaction changed them (so that a rollback makes them unknown).
GUC_KNOWN = "erp_guc"
GUC_CHANGED = "erp_guc_changed"
#: Set while a session's transaction runs on the connection (its settings were decided).
GUC_SESSION_TX = "erp_guc_session_tx"
_NO_TENANT = (None, False)


def _guc_params(tenant_id: int | None, system: bool) -> dict[str, str]:
    return {"t": "" if tenant_id is None else str(tenant_id), "s": "on" if system else "off"}


def _set_pg_guc(conn: Connection, tenant_id: int | None, system: bool) -> None:
    """Change the row-level-security settings for the rest of the current transaction."""
    conn.execute(_GUC_LOCAL, _guc_params(tenant_id, system))


def _begin_pg_guc(conn: Connection, tenant_id: int | None, system: bool) -> None:
    """Give a session's new transaction its row-level-security settings.

    A tenant (or none) is set at session level, and the connection remembers it: the next
    transaction that wants the same settings on the same connection (a worker's or a
    request's next one, for the same tenant) skips the round trip. System access is always
    transaction-local. A rollback of the transaction that set them
    reverts them in PostgreSQL, so it makes them unknown here (see :func:`install_guc_tracking`);
    changes within a transaction (``bind_tenant``, ``system_access``) are transaction-local and
    end with it.
    """
    info = conn.info
    info[GUC_SESSION_TX] = True
    if system:  # seeing every tenant never outlives the transaction that asked for it
        _set_pg_guc(conn, tenant_id, True)
        return
    want = (tenant_id, system)
    if info.get(GUC_KNOWN) == want:
        return
    info[GUC_KNOWN] = None
    conn.execute(_GUC_SESSION, _guc_params(tenant_id, system))
    info[GUC_KNOWN] = want
    info[GUC_CHANGED] = True


def install_guc_tracking(engine: Engine) -> None:
    """Keep ``Connection.info[GUC_KNOWN]`` true to what the PostgreSQL connection carries."""

    @event.listens_for(engine, "commit")
    def _committed(conn: Connection) -> None:
        # an error in COMMIT itself is caught by handle_error below
        conn.info.pop(GUC_CHANGED, None)
        conn.info.pop(GUC_SESSION_TX, None)

    @event.listens_for(engine, "rollback")
    def _rolled_back(conn: Connection) -> None:
        conn.info.pop(GUC_SESSION_TX, None)
        if conn.info.pop(GUC_CHANGED, None):
            conn.info[GUC_KNOWN] = None

    @event.listens_for(engine, "before_cursor_execute")
    def _raw_use(
        conn: Connection, cursor: Any, statement: str, params: Any, context: Any, many: bool
    ) -> None:
        # A statement outside a session's transaction (a raw connection, a migration) runs
        # with no tenant, whatever the last session on this pooled connection left behind.
        info = conn.info
        if info.get(GUC_SESSION_TX) or info.get(GUC_KNOWN) == _NO_TENANT:
            return
        info[GUC_KNOWN] = None
        cursor.execute(_NEUTRAL_SQL)
        info[GUC_KNOWN] = _NO_TENANT
        if conn.in_transaction():
            info[GUC_CHANGED] = True

    @event.listens_for(engine, "handle_error")
    def _failed(ctx: Any) -> None:
        if ctx.connection is not None and not ctx.connection.closed:
            ctx.connection.info[GUC_KNOWN] = None

    @event.listens_for(engine.pool, "checkin")
    def _returned(dbapi_conn: Any, record: Any) -> None:
        # returned inside a transaction that set them: the pool's reset rolled it back
        if record is None:
            return
        record.info.pop(GUC_SESSION_TX, None)
        if record.info.pop(GUC_CHANGED, None):
            record.info[GUC_KNOWN] = None


def fetch_one_raw(conn: Connection, statement: str, params: Mapping[str, Any]) -> Any:
    """The first row of ``statement`` run on ``conn``'s DBAPI cursor (its own paramstyle),
    bypassing SQLAlchemy's statement and result machinery, as a plain tuple (or None).

    Only for the few statements on a hot path where that machinery costs as much as the work
    itself (a flash sale's reservation). It runs in the connection's current transaction, like
    any statement; a DBAPI error is raised as SQLAlchemy's exception (``IntegrityError``,
    ``OperationalError``, ...) as ``Connection.execute`` would, with the connection invalidated
    when it was lost and the row-level-security settings forgotten as after any error (see
    ``erp_core.db.direct.on_cursor``).
    """
    rows: list[Any] = []
    on_cursor(conn, statement, dict(params), into=rows)
    return rows[0] if rows else None


def _forget_foreign_rows(session: Session) -> None:
    """Drop unchanged rows of other tenants from the identity map.

    ``session.get`` answers from the identity map without running a query, so the tenant filter
    never sees it: a row loaded with system access, or while the session acted for another
    tenant, must not be handed out once the session acts for this one. Changed rows stay (the
    flush guard refuses them); rows whose ``tenant_id`` is not loaded are reloaded through the
    filter if touched.
    """
    tid = session_tenant(session)
    if tid is None or session.info.get(SYSTEM_KEY):
        return
    deleted = None
    for state in list(session.identity_map.all_states()):
        obj = state.obj()
        if not isinstance(obj, TenantScoped) or state.dict.get("tenant_id", tid) == tid:
            continue
        if state.modified:
            continue
        if deleted is None:
            deleted = session.deleted
        if obj not in deleted:
            session.expunge(obj)


def bind_tenant(session: Session, tenant_id: int) -> None:
    """Make ``session`` act for ``tenant_id`` from now on (ORM filter and PostgreSQL RLS)."""
    session.info[TENANT_KEY] = tenant_id
    _forget_foreign_rows(session)
    if session.in_transaction() and _is_postgres(session):
        _set_pg_guc(session.connection(), tenant_id, bool(session.info.get(SYSTEM_KEY)))


@contextmanager
def system_access(session: Session) -> Iterator[Session]:
    """Let ``session`` see every tenant's rows for the duration (kernel lookups, CLI, admin).

    Use sparingly: token and session lookups before the tenant is known, cross-tenant reports
    in the CLI. Never for a request acting for a tenant.
    """
    previous = session.info.get(SYSTEM_KEY, False)
    session.info[SYSTEM_KEY] = True
    if _is_postgres(session):
        _set_pg_guc(session.connection(), session.info.get(TENANT_KEY), True)
    try:
        yield session
    finally:
        session.info[SYSTEM_KEY] = previous
        _forget_foreign_rows(session)
        if _is_postgres(session) and session.in_transaction():
            _set_pg_guc(session.connection(), session.info.get(TENANT_KEY), previous)


def _tenant_tables(state: ORMExecuteState) -> list[str]:
    """Tenant-owned tables the statement touches: its entities, and any table with a
    ``tenant_id`` column anywhere in it (joins, subqueries, ``select_from``, Core tables)."""
    names = {
        m.local_table.description for m in state.all_mappers if issubclass(m.class_, TenantScoped)
    }
    statement: Any = state.statement
    for element in visitors.iterate(statement):
        if isinstance(element, Table) and "tenant_id" in element.c:
            names.add(element.name)
    return sorted(n for n in names if n)


def _written_tenant_ids(state: ORMExecuteState) -> list[Any]:
    """The ``tenant_id`` values an INSERT or UPDATE statement writes, as far as they are given
    as values or parameters (an expression counts as a value other than the bound tenant)."""
    stmt: Any = state.statement
    rows: list[dict[Any, Any]] = []  # keyed by column or by name
    if isinstance(getattr(stmt, "_values", None), dict):
        rows.append(stmt._values)
    for group in getattr(stmt, "_multi_values", None) or ():
        rows.extend(r for r in group if isinstance(r, dict))
    found: list[Any] = []
    for row in rows:
        for key, value in row.items():
            if (key if isinstance(key, str) else getattr(key, "key", None)) == "tenant_id":
                found.append(getattr(value, "value", value))
    params: Any = state.parameters  # keyed by name: one look-up per row (bulk inserts' many)
    for named in [params] if isinstance(params, dict) else params or ():
        if isinstance(named, dict) and "tenant_id" in named:
            value = named["tenant_id"]
            found.append(getattr(value, "value", value))
    return found


class TenantValue(ColumnElement[int]):
    """A tenant id to compare ``tenant_id`` with, which PostgreSQL's planner cannot look up in
    the column's statistics (``(SELECT :tid)`` there; the bare value elsewhere).

    The statistics list every tenant known at the last ANALYZE among the column's most common
    values, so a tenant that is new or has grown since is estimated at one row, and the
    planner prefers an index that starts with ``tenant_id`` to the primary key: a lookup by id
    then reads all the tenant's rows. Compared with this value, the condition is estimated as
    an average tenant's share of the table instead.
    """

    inherit_cache = True
    _traverse_internals = [("value", InternalTraversal.dp_clauseelement)]
    type = BigInteger()

    def __init__(self, value: Any) -> None:
        self.value = coercions.expect(roles.ExpressionElementRole, value, type_=BigInteger())


@compiles(TenantValue)
def _tenant_value(element: TenantValue, compiler: Any, **kw: Any) -> str:
    return str(compiler.process(element.value, **kw))


@compiles(TenantValue, "postgresql")
def _tenant_value_pg(element: TenantValue, compiler: Any, **kw: Any) -> str:
    return f"(SELECT {compiler.process(element.value, **kw)})"


#: The execution parameter that carries the bound tenant into the criteria of every ORM
#: statement of a tenant session (set by the scoping hook; a statement run without it fails).
TENANT_PARAM = "erp_scope_tenant_id"

#: The option that filters every tenant-owned entity of an ORM statement to the tenant given as
#: :data:`TENANT_PARAM`. One for all tenants: the tenant is a parameter, not a value held by
#: the option, so a statement scoped once serves every tenant and SQLAlchemy finds its
#: compiled form and cache key as for any other statement. (A criterion holding the tenant id
#: made SQLAlchemy match that value's copies again at every execution: a tenant's ORM query
#: took about 85 us where an unscoped one took 48.)
_TENANT_CRITERIA = with_loader_criteria(
    TenantScoped,
    # the name spelt out: SQLAlchemy would take a module constant here for a tracked value
    lambda cls: cls.tenant_id == TenantValue(bindparam("erp_scope_tenant_id", type_=BigInteger())),
    include_aliases=True,
    track_closure_variables=False,
)

#: statement -> the statement with :data:`_TENANT_CRITERIA`, for as long as the statement
#: lives: a statement built once (a module's constant) is scoped once, and keeps its cache key.
_SCOPED: weakref.WeakKeyDictionary[Any, Any] = weakref.WeakKeyDictionary()


def _scoped(statement: Any) -> Any:
    try:
        found = _SCOPED.get(statement)
    except TypeError:  # not weakly referable: scoped at each use
        return statement.options(_TENANT_CRITERIA)
    if found is None:
        found = _SCOPED[statement] = statement.options(_TENANT_CRITERIA)
    return found


def _with_tenant(params: Any, tid: int) -> Any:
    """The execution's parameters with :data:`TENANT_PARAM` (each set of an executemany)."""
    if params is None:
        return {TENANT_PARAM: tid}
    if isinstance(params, list):
        return [{**p, TENANT_PARAM: tid} for p in params]
    return {**params, TENANT_PARAM: tid}


def _stamp_insert(state: ORMExecuteState, tid: int) -> None:
    """An ORM INSERT statement (``session.execute(insert(Model), rows)``, which bypasses the
    flush and its stamping) gets the bound tenant in every row that names none, as a new
    object does; rows that name another tenant were refused before."""
    mapper = state.bind_mapper
    if not state.is_orm_statement or mapper is None or not issubclass(mapper.class_, TenantScoped):
        return
    params: Any = state.parameters
    if isinstance(params, list) and params:
        state.parameters = [
            p if not isinstance(p, dict) or "tenant_id" in p else {**p, "tenant_id": tid}
            for p in params
        ]
    elif isinstance(params, dict) and params:
        if "tenant_id" not in params:
            state.parameters = {**params, "tenant_id": tid}
    else:
        stmt: Any = state.statement
        values = getattr(stmt, "_values", None)
        if isinstance(values, dict) and not getattr(stmt, "_multi_values", None):
            named = {k if isinstance(k, str) else getattr(k, "key", None) for k in values}
            if "tenant_id" not in named:
                state.statement = stmt.values(tenant_id=tid)


def _check_bulk_update(state: ORMExecuteState, tid: int) -> None:
    """ORM bulk UPDATE by primary key (``session.execute(update(Model), [rows])``): SQLAlchemy
    leaves the loader criteria out of its by-key statements, so every key must first be found
    among the bound tenant's rows; :class:`CrossTenantError` names those that are not (another
    tenant's, or none), and nothing is updated."""
    mapper = state.bind_mapper
    if mapper is None or not issubclass(mapper.class_, TenantScoped):
        return
    keys = [mapper.get_property_by_column(c).key for c in mapper.primary_key]
    rows: list[Any] = state.parameters or []  # type: ignore[assignment]
    wanted = {tuple(r.get(k) for k in keys) for r in rows}
    cols = [getattr(mapper.class_, k) for k in keys]
    found: set[tuple[Any, ...]] = set()
    listed = sorted(wanted, key=repr)
    for i in range(0, len(listed), 500):
        part = listed[i : i + 500]
        where = cols[0].in_([w[0] for w in part]) if len(cols) == 1 else tuple_(*cols).in_(part)
        found.update(tuple(r) for r in state.session.execute(select(*cols).where(where)))
    missing = [w[0] if len(w) == 1 else w for w in listed if w not in found]
    if missing:
        raise CrossTenantError(
            f"bulk update of {mapper.class_.__name__} names {missing[:5]!r}, which "
            f"{'is not a row' if len(missing) == 1 else 'are not rows'} of tenant {tid}"
        )


def _install_scoping(factory: sessionmaker[Session]) -> None:
    @event.listens_for(factory, "do_orm_execute")
    def _scope(state: ORMExecuteState) -> None:
        if not (state.is_select or state.is_update or state.is_delete or state.is_insert):
            return
        every = bool(
            state.session.info.get(SYSTEM_KEY) or state.execution_options.get("erp_all_tenants")
        )
        if not state.is_select:
            target = getattr(state.statement, "table", None)
            if getattr(target, "name", None) in cache.MASTER_TABLES:
                # master data of the bound tenant, or of any when the statement may reach any
                cache.bump(state.session, [None if every else session_tenant(state.session)])
        if every:
            return
        tid = session_tenant(state.session)
        if tid is None:
            names = _tenant_tables(state)
            if names:
                raise NoTenantError(
                    f"statement on tenant-owned {', '.join(names)} with no tenant in context"
                )
            return
        if state.is_insert or state.is_update:
            others = [v for v in _written_tenant_ids(state) if v != tid]
            if others:
                raise CrossTenantError(
                    f"statement writes tenant_id {others[0]!r} while acting for tenant {tid}"
                )
            if state.is_insert:
                _stamp_insert(state, tid)
                return
        if not state.is_orm_statement:
            return  # the criteria apply to ORM entities only: a Core statement filters itself
        if state.is_update and isinstance(state.parameters, list):
            _check_bulk_update(state, tid)
            return
        state.statement = _scoped(state.statement)
        state.parameters = _with_tenant(state.parameters, tid)

    @event.listens_for(factory, "before_flush")
    def _stamp(session: Session, flush_context: Any, instances: Any) -> None:
        system = bool(session.info.get(SYSTEM_KEY))
        tid = session_tenant(session)
        master: set[int | None] = set()
        new = session.new
        for obj in list(new) + list(session.dirty) + list(session.deleted):
            if isinstance(obj, cache.MasterData):
                if isinstance(obj, TenantScoped):
                    master.add(obj.tenant_id or tid)  # None: every tenant
                elif obj not in new:  # the tenant row (a new tenant has nothing cached)
                    master.add(getattr(obj, "id", None))
            if not isinstance(obj, TenantScoped):
                continue
            owner = obj.tenant_id
            if owner is None:
                if tid is None and system and type(obj).__tenant_nullable__:
                    continue
                if tid is None:
                    raise NoTenantError(
                        f"new {type(obj).__name__} has no tenant and none is in context"
                    )
                obj.tenant_id = tid
            elif tid is not None and owner != tid and not system:
                raise CrossTenantError(
                    f"{type(obj).__name__} of tenant {owner} written while acting for tenant {tid}"
                )
            elif tid is None and not system:
                raise NoTenantError(f"{type(obj).__name__} written with no tenant in context")
        if master:
            cache.bump(session, master)

    @event.listens_for(factory, "after_soft_rollback")
    def _savepoint_undone(session: Session, previous_transaction: Any) -> None:
        if previous_transaction.nested:
            cache.rolled_back_savepoint(session)

    @event.listens_for(factory, "after_begin")
    def _guc(session: Session, transaction: Any, connection: Connection) -> None:
        if connection.dialect.name == "postgresql":
            _begin_pg_guc(connection, session_tenant(session), bool(session.info.get(SYSTEM_KEY)))


#: Pages the write-ahead log may hold before a commit copies them into the database file
#: (SQLite's default is 1,000: about 4 MB). Each such checkpoint syncs both files to disk,
#: the one moment ``synchronous=NORMAL`` waits for the disk; a page written again before the
#: checkpoint is copied once. At 10,000 (about 40 MB of log) the order bench's commits took a
#: quarter less time (single mode 0.32 → 0.24 ms each; docs/benchmarks.md).
WAL_AUTOCHECKPOINT_PAGES = 10_000


def install_sqlite_pragmas(engine: Engine, *, foreign_keys: bool) -> None:
    """WAL journal (checkpointed every ``WAL_AUTOCHECKPOINT_PAGES``), a generous busy
    timeout, and (optionally) enforced foreign keys."""

    @event.listens_for(engine, "connect")
    def _pragmas(dbapi_conn: Any, record: Any) -> None:
        cur = dbapi_conn.cursor()
        if foreign_keys:
            cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute("PRAGMA busy_timeout=30000")
        cur.execute(f"PRAGMA wal_autocheckpoint={WAL_AUTOCHECKPOINT_PAGES}")
        cur.close()


def install_sqlite_transactions(engine: Engine) -> None:
    """Keep SQLite savepoints inside their transaction.

    pysqlite (Python < 3.12, legacy transaction control) emits BEGIN only before the first
    INSERT, UPDATE or DELETE. A SAVEPOINT taken after reads alone would then start a transaction
    of its own, and its RELEASE would commit it, out of reach of the outer rollback. So a
    SAVEPOINT outside a transaction is preceded by the BEGIN pysqlite would have sent. (Reads
    still run before BEGIN, as pysqlite does: beginning at the first read instead would make
    concurrent writers fail with "database is locked" when they upgrade their read snapshot.)
    """

    @event.listens_for(engine, "before_cursor_execute")
    def _begin_before_savepoint(
        conn: Connection, cursor: Any, statement: str, params: Any, context: Any, many: bool
    ) -> None:
        if statement.startswith("SAVEPOINT") and not cursor.connection.in_transaction:
            cursor.execute("BEGIN")


#: How many savepoint names (``sa_savepoint_1``, ...) keep their statements' text per engine
#: (a connection numbers its savepoints from 1 again in each transaction).
SAVEPOINT_NAMES_KEPT = 1000


def install_savepoint_statements(engine: Engine) -> None:
    """Send ``SAVEPOINT``, ``RELEASE SAVEPOINT`` and ``ROLLBACK TO SAVEPOINT`` straight to the
    driver's cursor.

    SQLAlchemy compiles these statements anew each time (they are not cached) and runs them
    through its full execution path: about 200 µs a savepoint on SQLite, three times per order
    in the order bench's single mode. Here each statement's text is compiled once per
    savepoint name (names repeat: a transaction's first is ``sa_savepoint_1``) by the dialect's own
    compiler, so it is the SQL SQLAlchemy sends, and it runs with :func:`on_cursor`: the
    engine's cursor events still fire (SQLite's BEGIN before a savepoint, the statement
    counts of tests), a driver error is raised as SQLAlchemy's. The connection events
    (``savepoint``, ``release_savepoint``, ``rollback_savepoint``) and the session's handling of
    nested transactions are SQLAlchemy's as before: only the dialect's method that emits the
    statement is replaced.
    """
    from sqlalchemy.sql.expression import (
        ReleaseSavepointClause,
        RollbackToSavepointClause,
        SavepointClause,
    )

    dialect = engine.dialect
    kept: dict[tuple[type[Any], str], str] = {}

    def statement(kind: type[Any], name: str) -> str:
        sql = kept.get((kind, name))
        if sql is None:
            sql = str(kind(name).compile(dialect=dialect))
            if len(kept) < 3 * SAVEPOINT_NAMES_KEPT:
                kept[(kind, name)] = sql
        return sql

    def do_savepoint(connection: Connection, name: str) -> None:
        on_cursor(connection, statement(SavepointClause, name), ())

    def do_release_savepoint(connection: Connection, name: str) -> None:
        on_cursor(connection, statement(ReleaseSavepointClause, name), ())

    def do_rollback_to_savepoint(connection: Connection, name: str) -> None:
        on_cursor(connection, statement(RollbackToSavepointClause, name), ())

    # the engine's own dialect instance: other engines keep SQLAlchemy's methods
    setattr(dialect, "do_savepoint", do_savepoint)  # noqa: B010 - replaces a method
    setattr(dialect, "do_release_savepoint", do_release_savepoint)  # noqa: B010
    setattr(dialect, "do_rollback_to_savepoint", do_rollback_to_savepoint)  # noqa: B010


#: A file database keeps a few connections open (opening one costs its pragmas and reading the
#: schema again, about a millisecond: more than a small transaction); more are opened when
#: needed and closed when given back, so that no thread waits for one. A forked worker
#: process drops the ones it inherited (``erp_core.tasks.process``).
_SQLITE_POOL: dict[str, Any] = {"poolclass": QueuePool, "pool_size": 5, "max_overflow": -1}


#: How many long statements (see :func:`cache_long_statements`) keep their parsed form.
LONG_STATEMENT_CACHE = 64


def cache_long_statements(size: int = LONG_STATEMENT_CACHE) -> bool:
    """Let psycopg keep the parsed form of long statements too; whether it now does.

    Before sending a statement psycopg finds its placeholders, and it keeps the result only
    for statements shorter than 4 KiB with at most 50 parameters. A bulk flush's multi-row
    ``INSERT ... VALUES (...), (...) RETURNING`` is longer, so every page of orders had
    psycopg search each of its statements again: 11% of a PostgreSQL worker's time in the
    order bench. The same statements come back page after page (the same number of rows
    makes the same text), so a bounded cache of their parsed form serves them. The parsed
    form is shared and never changed by psycopg (as for its own cache of short statements).
    """
    try:
        from psycopg import _queries
    except ImportError:  # pragma: no cover - psycopg is a dependency
        return False
    convert = getattr(_queries, "_query2pg_nocache", None)
    if convert is None:  # psycopg changed; the test of this function says so
        return False
    if not hasattr(convert, "cache_info"):
        _queries._query2pg_nocache = functools.lru_cache(maxsize=size)(convert)
    return True


def make_engine(url: str, **kwargs: Any) -> Engine:
    if url.startswith("sqlite"):
        pool: dict[str, Any] = {} if ":memory:" in url else _SQLITE_POOL
        engine = create_engine(
            url,
            connect_args={"check_same_thread": False, "timeout": 30},
            **{**pool, **kwargs},
        )

        install_sqlite_pragmas(engine, foreign_keys=True)
        install_sqlite_transactions(engine)
        install_savepoint_statements(engine)
        return engine
    engine = create_engine(url, pool_pre_ping=True, **kwargs)
    install_savepoint_statements(engine)
    if engine.dialect.name == "postgresql":
        install_guc_tracking(engine)
        if engine.dialect.driver == "psycopg":
            cache_long_statements()
    return engine


class Database:
    """An engine and a session factory with tenant scoping installed."""

    def __init__(self, url: str, **engine_kwargs: Any) -> None:
        self.url = url
        #: The plugin registry of the process, set by the app factory, the CLI and workers;
        #: sessions carry it (``session.info[REGISTRY_KEY]``) so that kernel services such as
        #: the audit log can call the tenant's hooks without every caller passing them.
        self.registry: Any = None
        self.engine = make_engine(url, **engine_kwargs)
        self.sessionmaker: sessionmaker[Session] = sessionmaker(
            self.engine, expire_on_commit=False, autoflush=True
        )
        _install_scoping(self.sessionmaker)

    @property
    def is_postgres(self) -> bool:
        return self.engine.dialect.name == "postgresql"

    def session(self, tenant_id: int | None = None) -> Session:
        s = self.sessionmaker()
        if self.registry is not None:
            s.info[REGISTRY_KEY] = self.registry
        if tenant_id is not None:
            s.info[TENANT_KEY] = tenant_id
        return s

    @contextmanager
    def tenant_session(self, tenant_id: int) -> Iterator[Session]:
        """A session acting for ``tenant_id`` that commits on success and rolls back on error."""
        with self.session(tenant_id) as s, s.begin():
            yield s

    @contextmanager
    def system_session(self) -> Iterator[Session]:
        """A session that sees every tenant (CLI and kernel maintenance only)."""
        with self.session() as s, s.begin(), system_access(s):
            yield s

    def dispose(self) -> None:
        self.engine.dispose()
