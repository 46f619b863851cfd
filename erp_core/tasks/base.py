"""Tenant-aware tasks.

A plugin declares a task with :func:`tenant_task`; the function receives a :class:`TaskContext`
(a session bound to the tenant, the tenant's hooks) and runs in one transaction that commits
when it returns. Send it with :func:`erp_core.tasks.enqueue.enqueue`, which attaches the tenant.

* The task is skipped when the tenant has not enabled the plugin, or is inactive or gone
  (checked when it runs, so enabling or disabling takes effect at once in running workers).
* Tasks are acknowledged late and rejected when their worker is lost: a worker that dies
  mid-task leaves the message to be delivered again, so task bodies must be idempotent.
* Two runs of the same task with the same arguments for the same tenant never overlap (a
  PostgreSQL advisory lock; on SQLite, whose workers share one machine, a file lock beside the
  database), so "look for what a previous run did, then do the rest" is a safe idempotent body.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from celery import shared_task
from sqlalchemy import select, text
from sqlalchemy.orm import Session

from erp_core.settings import Settings
from erp_core.tenancy.context import tenant_context
from erp_core.tenancy.models import Tenant
from erp_core.tenancy.service import enabled_plugins

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: threads of one worker process only
    fcntl = None  # type: ignore[assignment]

log = logging.getLogger(__name__)

TENANT_KWARG = "_erp_tenant_id"

#: Task options every tenant task gets (a plugin may add others, not weaken these).
TENANT_TASK_OPTIONS: dict[str, Any] = {"acks_late": True, "reject_on_worker_lost": True}


class MissingTenantError(ValueError):
    """A tenant task was sent without a tenant (use :func:`erp_core.tasks.enqueue.enqueue`)."""


@dataclass
class TaskContext:
    session: Session
    tenant_id: int
    hooks: Any
    settings: Settings
    enabled: frozenset[str] = frozenset()


def run_key(name: str, tenant_id: int, args: Any, kwargs: Any) -> int:
    """A signed 64-bit key naming one task run: task, tenant and arguments."""
    raw = json.dumps([name, tenant_id, args, kwargs], sort_keys=True, default=str)
    return int.from_bytes(hashlib.blake2b(raw.encode(), digest_size=8).digest(), "big", signed=True)


_STRIPES = [threading.Lock() for _ in range(64)]
_held = threading.local()


@contextmanager
def _sqlite_run_lock(database: str | None, key: int) -> Iterator[None]:
    """Serialise runs with the same key on one SQLite database, across threads and processes.

    Keys share 64 lock stripes: runs of different tasks rarely wait for each other, briefly. A
    task that calls another task directly already holds its stripe and does not wait for it.
    """
    stripe = key % len(_STRIPES)
    held: set[int] = _held.__dict__.setdefault("stripes", set())
    if stripe in held:
        yield
        return
    with _STRIPES[stripe]:
        held.add(stripe)
        try:
            if fcntl is None or not database or database == ":memory:":
                yield
                return
            folder = Path(f"{database}.locks")
            folder.mkdir(exist_ok=True)
            with (folder / f"{stripe:02d}.lock").open("a+b") as fh:
                fcntl.flock(fh, fcntl.LOCK_EX)
                try:
                    yield
                finally:
                    fcntl.flock(fh, fcntl.LOCK_UN)
        finally:
            held.discard(stripe)


def _tenant_id_of(name: str, kwargs: dict[str, Any]) -> int:
    raw = kwargs.pop(TENANT_KWARG, None)
    if raw is None:
        raise MissingTenantError(
            f"task {name} was sent without a tenant; send it with "
            "erp_core.tasks.enqueue.enqueue(app, task, tenant_id, ...)"
        )
    try:
        return int(raw)
    except (TypeError, ValueError):
        raise MissingTenantError(f"task {name} was sent with an invalid tenant {raw!r}") from None


def tenant_task(
    *, name: str, plugin: str | None, **options: Any
) -> Callable[[Callable[..., Any]], Any]:
    """Declare a task run for one tenant. ``plugin=None`` marks a kernel task."""
    weakened = {k for k, v in TENANT_TASK_OPTIONS.items() if options.get(k, v) != v}
    if weakened:
        raise ValueError(f"task {name}: {', '.join(sorted(weakened))} must stay on")

    def decorate(fn: Callable[..., Any]) -> Any:
        def run(*args: Any, **kwargs: Any) -> Any:
            from erp_core.tasks.runtime import runtime

            tenant_id = _tenant_id_of(name, kwargs)
            rt = runtime()
            key = run_key(name, tenant_id, args, kwargs)
            local = (
                _no_lock()
                if rt.db.is_postgres
                else _sqlite_run_lock(rt.db.engine.url.database, key)
            )
            with (
                local,
                tenant_context(tenant_id),
                rt.db.session(tenant_id) as session,
                session.begin(),
            ):
                if rt.db.is_postgres:
                    session.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": key})
                active = session.scalar(select(Tenant.is_active).where(Tenant.id == tenant_id))
                if not active:
                    log.info(
                        "task %s skipped: tenant %s is %s",
                        name,
                        tenant_id,
                        "inactive" if active is not None else "gone",
                    )
                    return None
                enabled = enabled_plugins(session, tenant_id)
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
                    tenant_id=tenant_id,
                    hooks=rt.registry.hooks_for(enabled),
                    settings=rt.settings,
                    enabled=enabled,
                )
                return fn(ctx, *args, **kwargs)

        run.__name__ = fn.__name__
        run.__qualname__ = fn.__qualname__
        run.__module__ = fn.__module__
        run.__doc__ = fn.__doc__
        # Options become attributes of the task class, in every Celery app that uses it.
        opts = {**options, **TENANT_TASK_OPTIONS, "erp_plugin": plugin, "erp_tenant_task": True}
        return shared_task(name=name, **opts)(run)

    return decorate


@contextmanager
def _no_lock() -> Iterator[None]:
    yield
