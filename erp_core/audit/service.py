"""Record security-relevant events."""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy.orm import Session

from erp_core.audit.models import AuditEvent
from erp_core.db.session import REGISTRY_KEY, SYSTEM_KEY, session_tenant, system_access

log = logging.getLogger(__name__)


def record(
    session: Session,
    action: str,
    *,
    tenant_id: int | None,
    actor: str = "",
    actor_user_id: int | None = None,
    actor_token_id: int | None = None,
    ip: str = "",
    target: str = "",
    outcome: str = "ok",
    details: dict[str, Any] | None = None,
    hooks: Any = None,
) -> AuditEvent:
    """Add an audit event to ``session`` (the caller commits with the change it audits).

    The ``erp_audit_event`` hook then runs with ``hooks`` if given, else with the hooks of the
    tenant's enabled plugins (kernel built-ins only for events without a tenant), provided the
    session came from a :class:`~erp_core.db.session.Database` that knows the registry.
    """
    event = AuditEvent(
        tenant_id=tenant_id,
        action=action,
        actor=actor[:254],
        actor_user_id=actor_user_id,
        actor_token_id=actor_token_id,
        ip=ip[:64],
        target=target[:254],
        outcome=outcome,
        details=details or {},
    )
    if (tenant_id is None or session_tenant(session) != tenant_id) and not session.info.get(
        SYSTEM_KEY
    ):
        # The kernel audits events for a tenant the session does not act for (a failed
        # login before any tenant is chosen, say): written with system access, flushed now.
        with system_access(session):
            session.add(event)
            session.flush()
    else:
        session.add(event)
    if hooks is None:
        from erp_core.tenancy.service import tenant_hooks

        hooks = tenant_hooks(session, tenant_id) if tenant_id is not None else None
        if hooks is None and tenant_id is None:
            registry = session.info.get(REGISTRY_KEY)
            hooks = registry.hooks_for(()) if registry is not None else None
    if hooks is not None:
        try:
            hooks.erp_audit_event(tenant_id=tenant_id, action=action, details=event.details)
        except Exception:  # an observer must never undo what it observes
            log.exception("erp_audit_event hook failed for %s", action)
    return event
