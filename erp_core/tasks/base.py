"""Tenant-aware tasks.

A plugin declares a task with :func:`tenant_task`; the function receives a :class:`TaskContext`
(a session bound to the tenant, the tenant's hooks) and runs in one transaction that commits
when it returns. The task is skipped when the tenant has not enabled the plugin (checked at run
time, so enabling or disabling takes effect at once). Tasks are acknowledged late: a worker that
dies mid-task leaves the message to be redelivered, so task bodies must be idempotent.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from celery import shared_task
from sqlalchemy.orm import Session

from erp_core.settings import Settings
from erp_core.tenancy.service import enabled_plugins

log = logging.getLogger(__name__)

TENANT_KWARG = "_erp_tenant_id"


@dataclass
class TaskContext:
    session: Session
    tenant_id: int
    hooks: Any
    settings: Settings


def tenant_task(
    *, name: str, plugin: str | None, **options: Any
) -> Callable[[Callable[..., Any]], Any]:
    """Declare a task run for one tenant. ``plugin=None`` marks a kernel task."""

    def decorate(fn: Callable[..., Any]) -> Any:
        def run(*args: Any, **kwargs: Any) -> Any:
            from erp_core.tasks.runtime import runtime

            tenant_id = kwargs.pop(TENANT_KWARG, None)
            if tenant_id is None:
                raise ValueError(f"task {name} was sent without a tenant")
            rt = runtime()
            with rt.db.session(int(tenant_id)) as session, session.begin():
                enabled = enabled_plugins(session, int(tenant_id))
                if plugin is not None and plugin not in enabled:
                    log.info(
                        "task %s skipped: plugin %s not enabled for tenant %s",
                        name,
                        plugin,
                        tenant_id,
                    )
                    return None
                ctx = TaskContext(
                    session=session,
                    tenant_id=int(tenant_id),
                    hooks=rt.registry.hooks_for(enabled),
                    settings=rt.settings,
                )
                return fn(ctx, *args, **kwargs)

        run.__name__ = fn.__name__
        run.__doc__ = fn.__doc__
        opts = {"acks_late": True, "reject_on_worker_lost": True, **options}
        task = shared_task(name=name, **opts)(run)
        task.erp_plugin = plugin
        return task

    return decorate
