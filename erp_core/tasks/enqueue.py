"""Send a task for a tenant."""

from __future__ import annotations

from typing import Any

from celery import Celery

from erp_core.tasks.base import TENANT_KWARG


def enqueue(
    app: Celery,
    task: str,
    tenant_id: int,
    *args: Any,
    task_id: str | None = None,
    **kwargs: Any,
) -> str:
    """Queue ``task`` to run for ``tenant_id``; returns the task id.

    The task runs only if the tenant still has the task's plugin enabled when a worker picks
    it up. ``task_id`` may be given to make a retry of the same send recognisable.
    """
    if isinstance(tenant_id, bool) or not isinstance(tenant_id, int):
        raise TypeError(f"tenant_id must be an int, not {type(tenant_id).__name__}")
    result = app.send_task(
        task, args=args, kwargs={**kwargs, TENANT_KWARG: tenant_id}, task_id=task_id
    )
    return str(result.id)
