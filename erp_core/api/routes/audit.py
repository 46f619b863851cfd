"""The audit log of the current tenant, newest first, with keyset pagination."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, ConfigDict
from sqlalchemy import select

from erp_core.api.params import MAX_ID
from erp_core.audit.models import AuditEvent
from erp_core.auth.deps import DbSession, require
from erp_core.auth.principal import Principal

router = APIRouter(prefix="/audit", tags=["audit"])


class AuditOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: int
    at: datetime
    action: str
    actor: str
    actor_user_id: int | None
    actor_token_id: int | None
    ip: str
    target: str
    outcome: str
    details: dict[str, Any]


class AuditPage(BaseModel):
    items: list[AuditOut]
    next_before_id: int | None


@router.get("", response_model=AuditPage)
def list_events(
    db: DbSession,
    p: Principal = Depends(require("core.audit.read")),
    action: str | None = Query(default=None, max_length=63),
    before_id: int | None = Query(default=None, ge=1, le=MAX_ID),
    limit: int = Query(default=50, ge=1, le=500),
) -> AuditPage:
    q = select(AuditEvent).order_by(AuditEvent.id.desc()).limit(limit + 1)
    if action:
        q = q.where(AuditEvent.action == action)
    if before_id:
        q = q.where(AuditEvent.id < before_id)
    rows = list(db.scalars(q))
    more = len(rows) > limit
    rows = rows[:limit]
    return AuditPage(
        items=[AuditOut.model_validate(r) for r in rows],
        next_before_id=rows[-1].id if more and rows else None,
    )
