"""Engines, sessions and the automatic tenant filter."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import create_engine, event, text
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.orm import ORMExecuteState, Session, sessionmaker, with_loader_criteria
from sqlalchemy.pool import NullPool

from erp_core.db.base import TenantScoped
from erp_core.tenancy.context import CrossTenantError, NoTenantError, current_tenant_id

TENANT_KEY = "erp_tenant_id"
SYSTEM_KEY = "erp_system"


def session_tenant(session: Session) -> int | None:
    tid = session.info.get(TENANT_KEY)
    return tid if tid is not None else current_tenant_id()


def _is_postgres(session: Session) -> bool:
    bind = session.get_bind()
    return bind.dialect.name == "postgresql"


def _set_pg_guc(conn: Connection, tenant_id: int | None, system: bool) -> None:
    conn.execute(
        text(
            "SELECT set_config('erp.tenant_id', :t, true), set_config('erp.all_tenants', :s, true)"
        ),
        {"t": "" if tenant_id is None else str(tenant_id), "s": "on" if system else "off"},
    )


def bind_tenant(session: Session, tenant_id: int) -> None:
    """Make ``session`` act for ``tenant_id`` from now on (ORM filter and PostgreSQL RLS)."""
    session.info[TENANT_KEY] = tenant_id
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
        if _is_postgres(session) and session.in_transaction():
            _set_pg_guc(session.connection(), session.info.get(TENANT_KEY), previous)


def _touches_tenant_tables(state: ORMExecuteState) -> bool:
    return any(issubclass(m.class_, TenantScoped) for m in state.all_mappers)


def _install_scoping(factory: sessionmaker[Session]) -> None:
    @event.listens_for(factory, "do_orm_execute")
    def _scope(state: ORMExecuteState) -> None:
        if not (state.is_select or state.is_update or state.is_delete):
            return
        if state.session.info.get(SYSTEM_KEY) or state.execution_options.get("erp_all_tenants"):
            return
        tid = session_tenant(state.session)
        if tid is None:
            if _touches_tenant_tables(state):
                names = sorted(
                    m.class_.__name__
                    for m in state.all_mappers
                    if issubclass(m.class_, TenantScoped)
                )
                raise NoTenantError(
                    f"query on tenant-owned {', '.join(names)} with no tenant in context"
                )
            return
        state.statement = state.statement.options(
            with_loader_criteria(
                TenantScoped,
                lambda cls: cls.tenant_id == tid,
                include_aliases=True,
                track_closure_variables=False,
            )
        )

    @event.listens_for(factory, "before_flush")
    def _stamp(session: Session, flush_context: Any, instances: Any) -> None:
        system = bool(session.info.get(SYSTEM_KEY))
        tid = session_tenant(session)
        for obj in list(session.new) + list(session.dirty) + list(session.deleted):
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

    @event.listens_for(factory, "after_begin")
    def _guc(session: Session, transaction: Any, connection: Connection) -> None:
        if connection.dialect.name == "postgresql":
            _set_pg_guc(connection, session_tenant(session), bool(session.info.get(SYSTEM_KEY)))


def make_engine(url: str, **kwargs: Any) -> Engine:
    if url.startswith("sqlite"):
        engine = create_engine(
            url,
            connect_args={"check_same_thread": False, "timeout": 30},
            poolclass=NullPool if ":memory:" not in url else None,
            **kwargs,
        )

        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn: Any, record: Any) -> None:
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.close()

        return engine
    return create_engine(url, pool_pre_ping=True, **kwargs)


class Database:
    """An engine and a session factory with tenant scoping installed."""

    def __init__(self, url: str, **engine_kwargs: Any) -> None:
        self.url = url
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
