"""Send a task for a tenant."""

from __future__ import annotations

from typing import Any

from celery import Celery

from erp_core.tasks.base import TENANT_KWARG


def enqueue(app: Celery, task: str, tenant_id: int, *args: Any, **kwargs: Any) -> str:
    """Queue ``task`` to run for ``tenant_id``; returns the task id."""
    result = app.send_task(task, args=args, kwargs={**kwargs, TENANT_KWARG: tenant_id})
    return str(result.id)
