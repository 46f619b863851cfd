"""Kernel tasks."""

from __future__ import annotations

import logging
from typing import Any

from celery import shared_task
from sqlalchemy import select

from erp_core.tasks.enqueue import enqueue
from erp_core.tenancy.models import Tenant, TenantPlugin

log = logging.getLogger(__name__)


@shared_task(
    name="erp.fanout", bind=True, acks_late=True, reject_on_worker_lost=True, ignore_result=True
)
def fanout(self: Any, plugin: str, task: str) -> int:
    """Send ``task`` once for every active tenant that has ``plugin`` enabled now.

    The scheduler runs this for every periodic task of every installed plugin; deciding here,
    at run time, is what makes enabling or disabling a plugin take effect without a restart.
    """
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
                .order_by(TenantPlugin.tenant_id)
            )
        )
    for tid in tenant_ids:
        enqueue(self.app, task, tid)
    log.debug("fanout %s -> %d tenant(s)", task, len(tenant_ids))
    return len(tenant_ids)
