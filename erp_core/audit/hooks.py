"""Kernel built-in hook implementations for the audit log."""

from __future__ import annotations

import logging
from typing import Any

from erp_core.plugins.hookspecs import hookimpl

log = logging.getLogger("erp.audit")


@hookimpl
def erp_audit_event(tenant_id: int | None, action: str, details: dict[str, Any]) -> None:
    """Mirror every audit event into the ``erp.audit`` log."""
    log.info("audit tenant=%s action=%s", tenant_id, action)
