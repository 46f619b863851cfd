"""Transactions behave the same on SQLite and PostgreSQL: a savepoint is nested in the
session's transaction, and rolling the transaction back undoes what the savepoint kept."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import event, func, select
from sqlalchemy.exc import IntegrityError

from erp_core.tenancy.models import Tenant


def _count(db: Any, slug: str) -> int:
    with db.session() as s:
        return int(s.scalar(select(func.count()).where(Tenant.slug == slug)) or 0)


def test_a_savepoint_after_reads_only_stays_inside_the_transaction(erp_db):
    with erp_db.session() as s:
        s.begin()
        s.scalar(select(func.count()).select_from(Tenant))  # a read: no write yet
        with s.begin_nested():
            s.add(Tenant(slug="nested", name="Nested"))
            s.flush()
        s.rollback()
    assert _count(erp_db, "nested") == 0


def test_a_released_savepoint_commits_with_its_transaction(erp_db):
    with erp_db.session() as s, s.begin():
        with s.begin_nested():
            s.add(Tenant(slug="kept", name="Kept"))
            s.flush()
        # a failed inner part is undone alone; the rest of the transaction goes on
        with pytest.raises(IntegrityError), s.begin_nested():
            s.add(Tenant(slug="kept", name="Again"))
            s.flush()
    assert _count(erp_db, "kept") == 1


def test_sqlite_connections_are_kept_and_keep_their_settings(tmp_path):
    """A file database keeps its connections between transactions (no pragmas and schema
    read per transaction), each with foreign keys enforced and its write-ahead log
    checkpointed less often than SQLite's default; a rolled-back transaction leaves
    nothing on the connection the next one gets; threads never wait for a connection."""
    import threading

    from erp_core.db.session import WAL_AUTOCHECKPOINT_PAGES, Database

    db = Database(f"sqlite:///{tmp_path / 'pool.sqlite'}")
    opened: list[object] = []
    event.listen(db.engine, "connect", lambda dbapi_conn, record: opened.append(dbapi_conn))
    try:
        with db.engine.begin() as conn:
            conn.exec_driver_sql("CREATE TABLE p (id INTEGER PRIMARY KEY)")
            conn.exec_driver_sql("CREATE TABLE c (p_id INTEGER REFERENCES p (id))")
        for _ in range(3):
            with db.engine.connect() as conn:
                assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
                assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
                assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 1  # NORMAL
                pages = conn.exec_driver_sql("PRAGMA wal_autocheckpoint").scalar()
                assert pages == WAL_AUTOCHECKPOINT_PAGES > 1000  # SQLite's default
                with pytest.raises(IntegrityError):
                    conn.exec_driver_sql("INSERT INTO c VALUES (7)")
                conn.rollback()
        assert len(opened) == 1
        with db.engine.connect() as conn:
            assert conn.exec_driver_sql("SELECT count(*) FROM c").scalar() == 0
        held = [db.engine.connect() for _ in range(12)]  # more than the pool keeps
        got: list[int] = []

        def one_more() -> None:
            with db.engine.connect():
                got.append(1)

        t = threading.Thread(target=one_more)
        t.start()
        t.join(timeout=5)
        assert got == [1]
        for conn in held:
            conn.close()
    finally:
        db.dispose()


def test_psycopg_keeps_long_statements_parsed(erp_db):
    """A bulk flush's multi-row INSERT is longer than psycopg's own cache takes; the engine
    gives psycopg a bounded cache for such statements (``cache_long_statements``). Run on
    SQLite too: it fails there as well if psycopg's internals no longer allow it."""
    from psycopg import _queries

    from erp_core.db.session import cache_long_statements

    assert cache_long_statements() is True
    assert cache_long_statements() is True  # idempotent: wrapped once
    convert: Any = _queries._query2pg_nocache
    assert not hasattr(convert.__wrapped__, "cache_info")
    if not erp_db.is_postgres:
        return
    n = _queries.MAX_CACHED_STATEMENT_PARAMS + 10  # beyond psycopg's own cache
    sql = "SELECT " + " + ".join(f"%(p{i})s::int" for i in range(n))
    params = {f"p{i}": i for i in range(n)}
    with erp_db.engine.connect() as conn:
        before = convert.cache_info()
        assert [conn.exec_driver_sql(sql, params).scalar() for _ in range(3)] == [
            n * (n - 1) // 2
        ] * 3
        after = convert.cache_info()
    assert after.misses - before.misses <= 1 and after.hits - before.hits >= 2


def test_savepoints_go_to_the_cursor_as_sqlalchemy_would_send_them(erp_db, monkeypatch):
    """``install_savepoint_statements``: the statements are SQLAlchemy's own text, the cursor
    events see them, a rolled-back savepoint undoes its part alone, names past those kept
    still work, and a driver error is raised as SQLAlchemy's."""
    from sqlalchemy.exc import DBAPIError
    from sqlalchemy.sql.expression import (
        ReleaseSavepointClause,
        RollbackToSavepointClause,
        SavepointClause,
    )

    from erp_core.db import session as session_module

    monkeypatch.setattr(session_module, "SAVEPOINT_NAMES_KEPT", 1)
    seen: list[str] = []

    def log(conn: Any, cursor: Any, statement: str, *rest: Any) -> None:
        seen.append(statement)

    event.listen(erp_db.engine, "before_cursor_execute", log)
    try:
        with erp_db.session() as s, s.begin():
            for n in range(3):
                with s.begin_nested():
                    s.add(Tenant(slug=f"sp-{n}", name="Savepoint"))
                    s.flush()
            with pytest.raises(IntegrityError), s.begin_nested():
                s.add(Tenant(slug="sp-0", name="Again"))
                s.flush()
        with erp_db.engine.connect() as conn, conn.begin(), pytest.raises(DBAPIError):
            erp_db.engine.dialect.do_release_savepoint(conn, "no_such_savepoint")
    finally:
        event.remove(erp_db.engine, "before_cursor_execute", log)
    dialect = erp_db.engine.dialect
    for method in ("do_savepoint", "do_release_savepoint", "do_rollback_to_savepoint"):
        assert getattr(dialect, method).__module__ == "erp_core.db.session"  # installed
    expected = []
    for n in range(1, 5):
        name = f"sa_savepoint_{n}"
        expected.append(str(SavepointClause(name).compile(dialect=dialect)))
        done = ReleaseSavepointClause if n < 4 else RollbackToSavepointClause
        expected.append(str(done(name).compile(dialect=dialect)))
    assert [x for x in seen if "SAVEPOINT" in x] == [
        *expected,
        "RELEASE SAVEPOINT no_such_savepoint",
    ]
    assert all(_count(erp_db, f"sp-{n}") == 1 for n in range(3))
