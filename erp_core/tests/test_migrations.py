"""One Alembic branch per distribution: upgrade heads, models match, one branch downgrades alone."""

from __future__ import annotations

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect

from erp_core.db.base import Base
from erp_core.db.migrate import (
    alembic_config,
    applied,
    downgrade_branch,
    heads,
    import_models,
    upgrade,
)


def test_every_branch_has_one_head_and_plugins_depend_on_core(erp_settings, erp_registry):
    cfg = alembic_config(erp_settings, erp_registry)
    script = ScriptDirectory.from_config(cfg)
    labels = heads(cfg)
    assert {"core", "test_alpha", "test_gamma"} <= set(labels)
    assert len(script.get_heads()) == len(labels)
    core_revs = {r.revision for r in script.iterate_revisions("core@head", "base")}
    for label in ("test_alpha", "test_gamma"):
        base = next(
            r
            for r in script.iterate_revisions(f"{label}@head", "base")
            if r.down_revision is None and label in r.branch_labels
        )
        deps = base.dependencies
        deps = (deps,) if isinstance(deps, str) else tuple(deps or ())
        assert deps and set(deps) <= core_revs


def test_database_is_at_every_head(erp_db, erp_settings, erp_registry):
    cfg = alembic_config(erp_settings, erp_registry)
    assert set(heads(cfg).values()) <= applied(cfg, erp_db.engine)
    # running again changes nothing
    assert upgrade(erp_settings, erp_registry, erp_db.engine) == []


def test_models_match_migrations(erp_db, erp_registry):
    import_models(erp_registry)
    with erp_db.engine.connect() as conn:
        ctx = MigrationContext.configure(conn, opts={"compare_type": True})
        diff = compare_metadata(ctx, Base.metadata)
    assert diff == []


def test_one_plugin_branch_downgrades_alone_and_comes_back(erp_db, erp_settings, erp_registry):
    engine = erp_db.engine
    assert "test_gamma_item" in inspect(engine).get_table_names()
    downgrade_branch(erp_settings, erp_registry, engine, "test_gamma")
    tables = inspect(engine).get_table_names()
    assert "test_gamma_item" not in tables
    assert "test_alpha_note" in tables and "core_tenant" in tables
    cfg = alembic_config(erp_settings, erp_registry)
    revs = applied(cfg, engine)
    assert heads(cfg)["test_gamma"] not in revs
    assert heads(cfg)["test_alpha"] in revs and heads(cfg)["core"] in revs
    assert upgrade(erp_settings, erp_registry, engine) == [heads(cfg)["test_gamma"]]
    assert "test_gamma_item" in inspect(engine).get_table_names()
    assert set(heads(cfg).values()) <= applied(cfg, engine)


def test_kernel_branch_cannot_be_downgraded_alone(erp_db, erp_settings, erp_registry):
    import pytest

    from erp_core.db.migrate import MigrationError

    with pytest.raises(MigrationError, match="kernel branch"):
        downgrade_branch(erp_settings, erp_registry, erp_db.engine, "core")
    with pytest.raises(MigrationError, match="not installed"):
        downgrade_branch(erp_settings, erp_registry, erp_db.engine, "nope")


def test_sqlite_planner_does_not_walk_a_tenant_through_its_tenant_index(erp_db):
    """Every tenant-scoped query has ``tenant_id = ?``; without statistics SQLite would take
    the index on ``tenant_id`` for it and read the tenant's whole table (a cost growing with
    the data) instead of the primary key or the other column's index."""
    if erp_db.is_postgres:
        pytest.skip("SQLite's planner; PostgreSQL keeps statistics of its own")
    with erp_db.engine.connect() as conn:
        stats = dict(conn.exec_driver_sql("SELECT idx, stat FROM sqlite_stat1").all())
        assert stats["ix_inv_move_tenant_id_created_at"] == "1000000 1000000 10 10"
        plans = {
            sql: " ".join(r[-1] for r in conn.exec_driver_sql("EXPLAIN QUERY PLAN " + sql))
            for sql in (
                "SELECT * FROM inv_move WHERE tenant_id = 1 AND id IN (1, 2, 3)",
                "UPDATE inv_move SET state = 'done' WHERE tenant_id = 1 AND id IN (1, 2)",
                "SELECT id FROM inv_move WHERE tenant_id = 1 AND idempotency_key = 'k'",
                "SELECT * FROM oms_parcel_line WHERE tenant_id = 1 AND parcel_id = 5",
            )
        }
    for sql, plan in plans.items():
        assert "(tenant_id=?)" not in plan, (sql, plan)


def test_sqlite_connections_pooled_before_a_migration_plan_with_its_hints(tmp_path):
    """SQLite reads its statistics when a connection opens: a connection the pool kept from
    before ``upgrade`` wrote the planner hints must not go on planning without them."""
    from erp_core.db.migrate import upgrade
    from erp_core.db.session import Database
    from erp_core.plugins.registry import PluginRegistry
    from erp_core.settings import load_settings

    url = f"sqlite:///{tmp_path / 'hints.sqlite'}"
    settings = load_settings(database_url=url, var_dir=str(tmp_path))
    registry = PluginRegistry.discover(settings.plugins or None)
    db = Database(url)
    try:
        with db.engine.connect() as conn:  # kept by the pool
            conn.exec_driver_sql("SELECT 1")
        upgrade(settings, registry, db.engine)
        with db.engine.connect() as conn:
            plan = " ".join(
                r[-1]
                for r in conn.exec_driver_sql(
                    "EXPLAIN QUERY PLAN SELECT * FROM oms_parcel_line"
                    " WHERE tenant_id = 1 AND parcel_id IN (1, 2)"
                )
            )
        assert "(tenant_id=?)" not in plan, plan
    finally:
        db.dispose()
