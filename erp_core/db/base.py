"""Declarative base shared by the kernel and every plugin, and the tenant-owned mixin."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    DateTime,
    ForeignKey,
    Integer,
    MetaData,
    TypeDecorator,
    literal_column,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import (
    DeclarativeBase,
    Mapped,
    MappedColumn,
    declared_attr,
    mapped_column,
    orm_insert_sentinel,
)

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

# BIGINT on PostgreSQL, INTEGER on SQLite (so that SQLite's rowid autoincrement works).
BigId = BigInteger().with_variant(Integer(), "sqlite")


def bulk_sentinel() -> MappedColumn[Any]:
    """A nullable ``insert_sentinel`` column for a table that takes many new rows at once.

    SQLAlchemy needs the new rows' primary keys back. PostgreSQL returns them from one
    multi-row INSERT in order; SQLite does not promise that order, so without a sentinel the
    ORM inserts such rows one statement each (a hundred timeline events: a hundred
    statements). With it, they go in one statement, matched by the sentinel's values. The
    column is only written during such inserts; a migration adds it as a nullable INTEGER.
    """
    return orm_insert_sentinel("insert_sentinel")


def utcnow() -> datetime:
    return datetime.now(UTC)


def beside_key(tenant_column: Any) -> Any:
    """``tenant_column`` in a form that no index serves (``tenant_id + 0``), for the tenant
    condition of a statement that finds its rows by primary key.

    PostgreSQL plans a prepared statement once for any parameters (its generic plan, which
    psycopg's prepared statements get after five runs). On a table not yet analyzed, such as
    every table of a new database for its first minute, that plan may take an index that
    starts with ``tenant_id`` for ``tenant_id = $1 AND id = $2`` and walk all of the
    tenant's rows in it for each row, until the next ``ANALYZE``. With the tenant condition
    unindexable, the primary key is the only way in. The condition still holds, on SQLite
    too (where the planner hints already make the primary key win)."""
    return tenant_column + literal_column("0")


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every backend (SQLite stores them naive)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given where an aware UTC datetime is required")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


class Base(DeclarativeBase):
    """Every table of the kernel and of every plugin uses this metadata."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map: dict[Any, Any] = {datetime: UTCDateTime}


class TenantScoped:
    """Mixin for tenant-owned models.

    Every ORM query on a subclass is filtered to the tenant bound to the session, and a query
    with no tenant bound raises :class:`erp_core.tenancy.context.NoTenantError`. New rows get the
    bound tenant's id, and flushing a row that belongs to another tenant raises. On PostgreSQL the
    table also gets a row-level security policy (applied by ``erp migrate``).
    """

    #: Set to True on a model whose rows may exist before a tenant is known (audit events).
    #: Rows with no tenant are visible only through :func:`erp_core.db.system_access`.
    __tenant_nullable__ = False
    #: Set to False on a model whose other indexes all start with ``tenant_id`` (a hot table
    #: need not maintain one more index).
    __tenant_index__ = True

    @declared_attr
    def tenant_id(cls) -> Mapped[int]:
        return mapped_column(
            BigId,
            ForeignKey("core_tenant.id", ondelete="CASCADE"),
            index=bool(getattr(cls, "__tenant_index__", True)),
            nullable=bool(getattr(cls, "__tenant_nullable__", False)),
        )
