"""Alembic environment shared by the kernel and every plugin branch."""

from __future__ import annotations

from alembic import context
from sqlalchemy import text

from erp_core.db.base import Base, UTCDateTime
from erp_core.db.migrate import import_models
from erp_core.db.session import make_engine
from erp_core.plugins.registry import PluginRegistry

config = context.config
registry: PluginRegistry = config.attributes.get("registry") or PluginRegistry.discover()
import_models(registry)
target_metadata = Base.metadata
only_plugin = context.get_x_argument(as_dictionary=True).get("plugin")


def include_object(obj, name, type_, reflected, compare_to):  # type: ignore[no-untyped-def]
    """With ``-x plugin=NAME``, autogenerate only sees that branch's tables (by prefix)."""
    if type_ == "table" and only_plugin:
        prefix = "core_" if only_plugin == "core" else f"{only_plugin}_"
        return bool(name.startswith(prefix))
    return True


def render_item(type_, obj, autogen_context):  # type: ignore[no-untyped-def]
    """Render the kernel's column types as plain SQLAlchemy types in migration files."""
    if type_ == "type" and isinstance(obj, UTCDateTime):
        return "sa.DateTime(timezone=True)"
    return False


def _run(connection) -> None:  # type: ignore[no-untyped-def]
    if connection.dialect.name == "postgresql":
        # Data migrations see every tenant's rows despite the row-level security policies.
        connection.execute(text("SELECT set_config('erp.all_tenants', 'on', true)"))
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        include_object=include_object,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
        render_item=render_item,
    )
    with context.begin_transaction():
        context.run_migrations()


connection = config.attributes.get("connection")
if connection is not None:
    _run(connection)
else:
    engine = make_engine(config.get_main_option("sqlalchemy.url") or "")
    with engine.begin() as conn:
        _run(conn)
    engine.dispose()
