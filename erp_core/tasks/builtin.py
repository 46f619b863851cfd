"""Kernel tasks."""

from __future__ import annotations

import logging

from celery import current_app, shared_task
from sqlalchemy import select

from erp_core.tasks.base import TENANT_KWARG
from erp_core.tenancy.models import Tenant, TenantPlugin

log = logging.getLogger(__name__)


@shared_task(name="erp.fanout", acks_late=True, ignore_result=True)
def fanout(plugin: str, task: str) -> int:
    """Send ``task`` once for every active tenant that has ``plugin`` enabled now."""
    from erp_core.tasks.runtime import runtime

    rt = runtime()
    with rt.db.system_session() as s:
        tenant_ids = list(
            s.scalars(
                select(TenantPlugin.tenant_id)
                .join(Tenant, Tenant.id == TenantPlugin.tenant_id)
                .where(
                    TenantPlugin.plugin == plugin,
                    TenantPlugin.enabled.is_(True),
                    Tenant.is_active.is_(True),
                )
            )
        )
    for tid in tenant_ids:
        current_app.send_task(task, kwargs={TENANT_KWARG: tid})
    log.debug("fanout %s -> %d tenants", task, len(tenant_ids))
    return len(tenant_ids)
