"""The audit log table: append-only."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from erp_core.db.base import Base, BigId, TenantScoped, utcnow


class AuditEvent(TenantScoped, Base):
    """One security-relevant event. ``tenant_id`` is empty for events before a tenant is known
    (a failed login for an unknown address); such events are visible only to operators (CLI)."""

    __tablename__ = "core_audit_event"
    __tenant_index__ = False  # the (tenant_id, id) index starts with it
    __table_args__ = (Index("ix_core_audit_event_tenant_id_id", "tenant_id", "id"),)
    __tenant_nullable__ = True

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(nullable=False, default=utcnow)
    action: Mapped[str] = mapped_column(String(63), nullable=False)
    actor_user_id: Mapped[int | None] = mapped_column(BigId)
    actor_token_id: Mapped[int | None] = mapped_column(BigId)
    actor: Mapped[str] = mapped_column(String(254), nullable=False, default="")
    ip: Mapped[str] = mapped_column(String(64), nullable=False, default="")
    target: Mapped[str] = mapped_column(String(254), nullable=False, default="")
    outcome: Mapped[str] = mapped_column(String(16), nullable=False, default="ok")
    details: Mapped[dict[str, Any]] = mapped_column(JSON, nullable=False, default=dict)
