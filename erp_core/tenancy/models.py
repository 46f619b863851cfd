"""Tenant and per-tenant plugin enablement."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Boolean, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from erp_core.db.base import Base, BigId, TenantScoped, utcnow
from erp_core.db.cache import MasterData, new_epoch


class Tenant(MasterData, Base):
    """A merchant. Not tenant-scoped itself; every tenant-owned row points at one."""

    __tablename__ = "core_tenant"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    slug: Mapped[str] = mapped_column(String(63), unique=True, nullable=False)
    name: Mapped[str] = mapped_column(String(200), nullable=False)
    currency: Mapped[str] = mapped_column(String(3), nullable=False, default="CNY")
    timezone: Mapped[str] = mapped_column(String(64), nullable=False, default="Asia/Shanghai")
    locale: Mapped[str] = mapped_column(String(16), nullable=False, default="zh_CN")
    theme: Mapped[str] = mapped_column(String(63), nullable=False, default="default")
    # Bumped on every plugin enable/disable; caches of the enabled set are keyed by it.
    plugin_epoch: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    # Bumped by every transaction that writes master data of the tenant (erp_core.db.cache).
    data_epoch: Mapped[int] = mapped_column(
        Integer, nullable=False, default=new_epoch, server_default="0"
    )
    is_active: Mapped[bool] = mapped_column(Boolean, nullable=False, default=True)
    created_at: Mapped[datetime] = mapped_column(nullable=False, default=utcnow)

    def settings_dict(self) -> dict[str, Any]:
        return {
            "currency": self.currency,
            "timezone": self.timezone,
            "locale": self.locale,
            "theme": self.theme,
        }


class TenantPlugin(TenantScoped, Base):
    """One row per plugin a tenant has ever enabled; ``enabled`` says whether it is on now."""

    __tablename__ = "core_tenant_plugin"
    __table_args__ = (UniqueConstraint("tenant_id", "plugin"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    plugin: Mapped[str] = mapped_column(String(63), nullable=False)
    enabled: Mapped[bool] = mapped_column(Boolean, nullable=False, default=True)
    enabled_version: Mapped[str | None] = mapped_column(String(40))
    updated_at: Mapped[datetime] = mapped_column(nullable=False, default=utcnow)
