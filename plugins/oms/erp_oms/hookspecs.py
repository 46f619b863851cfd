"""Extension points of the OMS, for other plugins.

A plugin implements them with ``erp_core.plugins.hookspecs.hookimpl`` in a module its manifest
lists under ``hooks`` and depends on ``oms``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

hookspec = pluggy.HookspecMarker("erp")


@hookspec
def oms_review_rule_types() -> list[Any]:  # type: ignore[empty-body]
    """Review rule types this plugin adds (objects like ``erp_oms.review.RuleType``: ``kind``,
    titles, ``params``, ``validate``, ``matches``). A merchant can then use them in the rule
    editor like the built-in ones. Kinds must be unique; a clash with a built-in is refused."""


@hookspec
def oms_routing_strategies() -> list[Any]:  # type: ignore[empty-body]
    """Routing strategies this plugin adds (objects like ``erp_oms.routing.Strategy``: ``name``,
    titles, ``pick``). A tenant picks one in the OMS settings."""


@hookspec
def oms_refund_after_shipment(session: Session, tenant_id: int, order_id: int, refund: Any) -> None:
    """A refund was requested for an order that has already shipped: after-sales takes it
    from here (the OMS records it on the order's timeline). ``refund`` is the kernel's
    ``erp_core.channels.Refund``. Runs in the transaction that stored the refund."""


@hookspec
def oms_order_shipped(session: Session, tenant_id: int, order_id: int) -> None:
    """Every parcel of the order has shipped (its revenue entry posted, its stock moves done).
    Runs in the transaction that recorded the shipment."""
