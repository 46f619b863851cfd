"""Background work of the OMS: the pipeline, write-back, channel stock push.

All are tenant tasks (one run per tenant at a time, skipped where the OMS is not enabled) and
idempotent: a redelivered or overlapping run changes nothing twice.
"""

from __future__ import annotations

import logging
from typing import Any

from erp_core.tasks.base import TaskContext, tenant_task

log = logging.getLogger(__name__)


@tenant_task(name="oms.process", plugin="oms")
def process(ctx: TaskContext) -> dict[str, Any]:
    """Take waiting orders through review, routing and reservation."""
    from erp_oms.service import process as run
    from erp_oms.service import settings_of

    if not settings_of(ctx.session).auto_process:
        return {"skipped": "auto_process is off"}
    res = run(ctx.session, hooks=ctx.hooks)
    return {
        "reviewed": res.reviewed,
        "held": res.held,
        "merged": res.merged,
        "routed": res.routed,
        "reserved": res.reserved,
        "shipped": res.shipped,
    }


@tenant_task(name="oms.writeback", plugin="oms")
def writeback(ctx: TaskContext) -> dict[str, int]:
    """Send due tracking numbers to the platforms (failed ones again, after their delay)."""
    from erp_core.tasks.runtime import runtime
    from erp_oms.writeback import run_due

    rt = runtime()
    return run_due(ctx.session, rt.registry, rt.settings)


@tenant_task(name="oms.trails", plugin="oms")
def trails(ctx: TaskContext) -> dict[str, int]:
    """Ask the platforms for the couriers' trails of the parcels on their way."""
    from erp_core.tasks.runtime import runtime
    from erp_oms.writeback import run_trails

    rt = runtime()
    return run_trails(ctx.session, rt.registry, rt.settings)


@tenant_task(name="oms.stock_push", plugin="oms")
def stock_push(ctx: TaskContext, full: bool = False) -> dict[str, int]:
    """Tell every shop the sellable stock of the SKUs that changed (all of them with full)."""
    from erp_core.tasks.runtime import runtime
    from erp_oms.stockpush import push

    rt = runtime()
    return push(ctx.session, rt.registry, rt.settings, full=full)


@tenant_task(name="oms.stock_push_full", plugin="oms")
def stock_push_full(ctx: TaskContext) -> dict[str, int]:
    """Every SKU to every shop: corrects what a platform changed on its side."""
    from erp_core.tasks.runtime import runtime
    from erp_oms.stockpush import push

    rt = runtime()
    return push(ctx.session, rt.registry, rt.settings, full=True)
