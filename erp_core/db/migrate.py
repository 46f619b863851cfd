"""Alembic, one branch per distribution: the kernel's ``core`` branch plus one per plugin.

Each plugin's manifest names its versions folder (``migrations="erp_oms:migrations/versions"``);
its first revision is an independent base with ``branch_labels = ("<plugin>",)`` and
``depends_on`` the kernel revision it builds on. ``erp migrate`` runs ``upgrade heads``.
"""

from __future__ import annotations

import importlib
import logging
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect, text
from sqlalchemy.engine import Engine

from erp_core.plugins.registry import PluginRegistry
from erp_core.settings import Settings
from erp_core.web.templating import resource_path

log = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
KERNEL_MODEL_MODULES = (
    "erp_core.tenancy.models",
    "erp_core.auth.models",
    "erp_core.audit.models",
    "erp_core.ledger.models",
    "erp_core.inventory.models",
    "erp_core.web.models",
    "erp_core.channels.models",
    "erp_core.channels.inbox_models",
    "erp_core.channels.sync_models",
)
RLS_POLICY = "erp_tenant_isolation"


class MigrationError(RuntimeError):
    """A migration could not be applied or refused to run."""


def import_models(registry: PluginRegistry) -> None:
    """Import every model module so that ``Base.metadata`` knows all tables."""
    for mod in KERNEL_MODEL_MODULES:
        importlib.import_module(mod)
    for m in registry.manifests():
        if m.models:
            importlib.import_module(m.models)


def version_locations(registry: PluginRegistry) -> dict[str, Path]:
    locs = {"core": MIGRATIONS_DIR / "versions"}
    for m in registry.manifests():
        if m.migrations:
            locs[m.name] = resource_path(m.migrations)
    return locs


def alembic_config(settings: Settings, registry: PluginRegistry, url: str | None = None) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.set_main_option("path_separator", "newline")
    cfg.set_main_option(
        "version_locations", "\n".join(str(p) for p in version_locations(registry).values())
    )
    cfg.set_main_option(
        "sqlalchemy.url", (url or settings.resolved_database_url()).replace("%", "%%")
    )
    cfg.attributes["registry"] = registry
    return cfg


def heads(cfg: Config) -> dict[str, str]:
    """Branch label -> head revision of that branch in the code."""
    script = ScriptDirectory.from_config(cfg)
    labels = {label for rev in script.walk_revisions() for label in rev.branch_labels}
    out: dict[str, str] = {}
    for label in sorted(labels):
        rev = script.get_revision(f"{label}@head")
        assert rev is not None
        out[label] = rev.revision
    return out


def applied(cfg: Config, engine: Engine) -> set[str]:
    """Every revision the database has applied (the current heads and all they build on)."""
    script = ScriptDirectory.from_config(cfg)
    tops = current(engine)
    if not tops:
        return set()
    return {r.revision for r in script.iterate_revisions(tuple(tops), "base") if r is not None}


def current(engine: Engine) -> set[str]:
    with engine.connect() as conn:
        return set(MigrationContext.configure(conn).get_current_heads())


def upgrade(settings: Settings, registry: PluginRegistry, engine: Engine) -> list[str]:
    """Upgrade every installed branch to head; apply row-level security on PostgreSQL.

    Returns the revisions that were applied by this call.
    """
    cfg = alembic_config(settings, registry, url=engine.url.render_as_string(hide_password=False))
    before = applied(cfg, engine)
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "heads")
    if engine.dialect.name == "postgresql":
        apply_rls(engine)
    if engine.dialect.name == "sqlite":
        sqlite_planner_hints(engine)
        # SQLite reads its statistics when a connection opens: the connections pooled before
        # the hints were written would keep planning without them
        engine.dispose()
    return sorted(applied(cfg, engine) - before)


#: What ``sqlite_stat1`` says of an index on ``tenant_id`` alone: a million rows, every one of
#: them sharing its tenant (the worst case, and nearly the truth on an embedded database).
TENANT_INDEX_STAT = "1000000 1000000"


def sqlite_planner_hints(engine: Engine) -> list[str]:
    """Tell SQLite's query planner that an index on ``tenant_id`` alone selects nothing.

    Without statistics SQLite guesses that any index equality narrows to a few rows, so a
    query such as ``WHERE tenant_id = ? AND parcel_id = ?`` (every tenant-scoped query has
    the first term) may walk the tenant's whole table through ``ix_..._tenant_id`` instead of
    using the index on ``parcel_id``: a cost that grows with the table. This writes
    ``sqlite_stat1`` rows for the indexes that start with ``tenant_id`` (the planner keeps its
    defaults for the others); a later ``ANALYZE`` replaces them with measured ones, which say
    the same.
    Idempotent; returns the indexes written."""
    done: list[str] = []
    with engine.begin() as conn:
        conn.exec_driver_sql("ANALYZE sqlite_schema")  # creates sqlite_stat1 when missing
        indexes = conn.exec_driver_sql(
            "SELECT name, tbl_name FROM sqlite_schema WHERE type = 'index'"
        ).all()
        for name, table in indexes:
            cols = [r[2] for r in conn.exec_driver_sql(f'PRAGMA index_info("{name}")')]
            if not cols or cols[0] != "tenant_id":
                continue
            unique = any(
                r[1] == name and r[2] for r in conn.exec_driver_sql(f'PRAGMA index_list("{table}")')
            )
            # the tenant selects nothing; each further column narrows as the planner's default
            # guess does (about ten rows), the last of a unique index to one
            rest = ["10"] * (len(cols) - 1)
            if unique and rest:
                rest[-1] = "1"
            stat = " ".join([TENANT_INDEX_STAT, *rest])
            conn.exec_driver_sql(
                "DELETE FROM sqlite_stat1 WHERE tbl = ? AND idx = ?", (table, name)
            )
            conn.exec_driver_sql(
                "INSERT INTO sqlite_stat1 (tbl, idx, stat) VALUES (?, ?, ?)", (table, name, stat)
            )
            done.append(name)
    return done


def downgrade_branch(
    settings: Settings, registry: PluginRegistry, engine: Engine, branch: str, target: str = "base"
) -> None:
    """Downgrade one plugin's branch alone (to ``target``: ``base`` or a revision)."""
    if branch.startswith("core"):
        raise MigrationError("the kernel branch cannot be downgraded alone")
    if branch not in version_locations(registry):
        raise MigrationError(f"plugin {branch!r} is not installed or has no migrations")
    cfg = alembic_config(settings, registry, url=engine.url.render_as_string(hide_password=False))
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, f"{branch}@{target}")


def apply_rls(engine: Engine) -> list[str]:
    """Enable and force row-level security on every table with a ``tenant_id`` column.

    The policy admits rows of the tenant bound by the session (``erp.tenant_id``) and, for
    kernel maintenance only, every row when ``erp.all_tenants`` is on. Idempotent.
    """
    done: list[str] = []
    with engine.begin() as conn:
        tables = [
            t
            for t in inspect(conn).get_table_names()
            if any(c["name"] == "tenant_id" for c in inspect(conn).get_columns(t))
        ]
        existing = {
            r[0]
            for r in conn.execute(
                text(
                    "SELECT tablename FROM pg_policies WHERE policyname = :p AND schemaname = "
                    "current_schema()"
                ),
                {"p": RLS_POLICY},
            )
        }
        for t in tables:
            q = f'"{t}"'
            conn.execute(text(f"ALTER TABLE {q} ENABLE ROW LEVEL SECURITY"))
            conn.execute(text(f"ALTER TABLE {q} FORCE ROW LEVEL SECURITY"))
            if t not in existing:
                cond = (
                    "current_setting('erp.all_tenants', true) = 'on' OR tenant_id = "
                    "NULLIF(current_setting('erp.tenant_id', true), '')::bigint"
                )
                conn.execute(
                    text(f"CREATE POLICY {RLS_POLICY} ON {q} USING ({cond}) WITH CHECK ({cond})")
                )
                done.append(t)
    return done


def new_revision(
    settings: Settings,
    registry: PluginRegistry,
    engine: Engine,
    branch: str,
    message: str,
    *,
    autogenerate: bool = True,
) -> str:
    """Write a new revision on ``branch`` (the first one starts the branch); returns its path."""
    locs = version_locations(registry)
    if branch not in locs:
        raise MigrationError(f"plugin {branch!r} is not installed or declares no migrations")
    cfg = alembic_config(settings, registry, url=engine.url.render_as_string(hide_password=False))
    cfg.cmd_opts = type("Opts", (), {"x": [f"plugin={branch}"]})()
    script = ScriptDirectory.from_config(cfg)
    has_branch = branch in heads(cfg)
    kwargs: dict[str, object] = {}
    if has_branch:
        kwargs["head"] = f"{branch}@head"
    else:
        kwargs.update(head="base", branch_label=branch, version_path=str(locs[branch]))
        if branch != "core":
            core_head = script.get_revision("core@head")
            assert core_head is not None
            kwargs["depends_on"] = [core_head.revision]
    locs[branch].mkdir(parents=True, exist_ok=True)
    scripts = command.revision(cfg, message=message, autogenerate=autogenerate, **kwargs)  # type: ignore[arg-type]
    rev = scripts[0] if isinstance(scripts, list) else scripts
    assert rev is not None
    return str(rev.path)
