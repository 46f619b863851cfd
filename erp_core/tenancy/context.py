"""Which tenant the current unit of work acts for.

The tenant travels on the SQLAlchemy session (``session.info``) so that it survives FastAPI's
thread pool; the context variable is a fallback for code that opens its own sessions (tasks, CLI).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

_current_tenant: ContextVar[int | None] = ContextVar("erp_current_tenant", default=None)


class NoTenantError(RuntimeError):
    """A tenant-owned table was queried with no tenant in context."""


class CrossTenantError(RuntimeError):
    """A row of one tenant was about to be written while acting for another."""


def current_tenant_id() -> int | None:
    return _current_tenant.get()


@contextmanager
def tenant_context(tenant_id: int) -> Iterator[None]:
    token = _current_tenant.set(tenant_id)
    try:
        yield
    finally:
        _current_tenant.reset(token)
