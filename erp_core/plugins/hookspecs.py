# mypy: disable-error-code="empty-body"
"""Kernel hook specifications. Plugins implement them with ``@erp_core.hookimpl``.

All hooks are called with keyword arguments; an implementation may accept any subset of them.
Hooks run synchronously and do no network I/O: work that needs the network is enqueued as a task.
Hooks that run inside a database transaction must flush, never commit.
For a tenant, only the implementations of the plugins it has enabled run.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pluggy

hookspec = pluggy.HookspecMarker("erp")
hookimpl = pluggy.HookimplMarker("erp")

if TYPE_CHECKING:
    from collections.abc import Sequence

    from fastapi import FastAPI
    from sqlalchemy.orm import Session

    from erp_core.auth.principal import Principal
    from erp_core.channels.types import Order, Payment, Refund
    from erp_core.inventory.types import StockChange, StockValuation
    from erp_core.ledger.types import EntryDraft
    from erp_core.plugins.manifest import MenuItem
    from erp_core.tenancy.models import Tenant


# --- lifecycle ----------------------------------------------------------------------------


@hookspec
def erp_startup(app: FastAPI) -> None:
    """Called once per web process after every plugin is registered and its routers mounted.

    Runs for every installed plugin, whatever tenants enabled it (it is process-wide).
    """


@hookspec
def erp_tenant_created(session: Session, tenant: Tenant) -> None:
    """A tenant was just created. Runs in the creating transaction: flush, never commit.

    Only kernel built-ins run here (a new tenant has no plugin enabled yet).
    """


@hookspec
def erp_tenant_plugin_enabled(session: Session, tenant: Tenant, plugin: str) -> None:
    """``plugin`` was just enabled for ``tenant``; seed the tenant's data for it here.

    Runs in the enabling transaction (flush, never commit), with the newly enabled plugin's
    hooks already active. Called for each plugin enabled, so filter on ``plugin``.
    """


@hookspec
def erp_tenant_plugin_disabled(session: Session, tenant: Tenant, plugin: str) -> None:
    """``plugin`` was just disabled for ``tenant``. Data is kept; stop anything that runs.

    Runs in the disabling transaction before the plugin's hooks are removed for the tenant.
    """


@hookspec
def erp_demo_tenant(session: Session, tenant: Tenant) -> None:
    """The demo tenant (``erp serve --demo``) was set up, its plugins enabled and stock seeded:
    switch on what makes the demo run by itself (automatic shipping, say). Never called for a
    real tenant. Runs in a transaction bound to the tenant: flush, never commit; idempotent."""


# --- web / UI -----------------------------------------------------------------------------


@hookspec
def erp_menu_items(tenant: Tenant, principal: Principal) -> list[MenuItem]:
    """Dynamic menu entries for this tenant and user. Static entries belong in the manifest.

    Return a list (possibly empty); the kernel filters entries by the user's permissions.
    """


# --- audit --------------------------------------------------------------------------------


@hookspec
def erp_audit_event(tenant_id: int | None, action: str, details: dict[str, Any]) -> None:
    """A security-relevant event was recorded in the audit log (login, token use, ...).

    Runs after the event is stored, for the tenant's enabled plugins; use it to forward
    events (a SIEM, an office-suite alert). Do no network I/O here: enqueue a task.
    """


# --- ledger -------------------------------------------------------------------------------


@hookspec
def erp_ledger_validate(session: Session, draft: EntryDraft) -> list[str]:
    """Extra checks on a journal entry about to be posted (``erp_core.ledger.post_entry``).

    Called after the kernel's own checks passed (balanced, accounts open, period open), in
    the posting transaction; read what you need, write nothing. Return the problems found, as
    messages for users (an empty list when the entry is fine); any problem refuses the entry
    with a ``LedgerError`` that lists them all. Do not raise for a problem: return it.
    """


@hookspec
def erp_ledger_source_url(source_type: str, source_id: str) -> str | None:
    """The web page of a journal entry's source document (``source_type`` / ``source_id``,
    e.g. ``oms_order`` / ``884``), for the entry's page to link to it.

    Return a path on this site (``/oms/orders/884``) for a source type you own, None for
    any other. Called while a page renders: no database, no I/O. The first path returned is
    used; without one the source is shown as plain text.
    """


# --- inventory ----------------------------------------------------------------------------


@hookspec
def erp_stock_valued(
    session: Session, tenant_id: int, valuations: Sequence[StockValuation]
) -> None:
    """Stock moves that change the books are done: each of ``valuations`` says what one move
    was (receipt, delivery, adjustment gain or loss, scrap, return), its quantity, unit cost
    (moving average; receipts at their purchase cost) and positive ``value`` in the tenant's
    currency.

    Called once per inventory service call that valued moves, with all of them in move order
    (moves with a value of zero are not reported), in the moves' transaction, after the stock
    and the valuation are updated; flush, never commit. An exception undoes the whole stock
    operation. The ledger's built-in implementation posts one journal entry per move, all in
    one go, idempotently by ``move_id``.
    """


@hookspec
def erp_stock_changed(session: Session, tenant_id: int, changes: list[StockChange]) -> None:
    """On hand, reserved or available stock changed: ``changes`` holds the new quantities of
    every (SKU, warehouse) the service call touched, one entry each.

    Called once per inventory service call (receipt, reservation, completion, count ...),
    in its transaction, after the changes are written; flush, never commit. The transaction
    may still roll back: connectors enqueue their stock push as a task, never call a
    platform from here.
    """


# --- channels (emitted by the connector runtime: sync and inbox) ---------------------------------


@hookspec
def erp_channel_order(session: Session, tenant_id: int, account_id: int, order: Order) -> None:
    """A sales channel delivered ``order`` (normalized) for channel account ``account_id``:
    first seen, or changed since the version delivered before.

    Called by the sync engine and the inbox in the transaction that advances the sync cursor
    or marks the pushed message processed; flush, never commit. The same version of an order
    is not delivered twice, but versions may arrive out of order (a push can overtake a
    sync): compare ``order.modified_at`` with what you stored and keep the newer. Match lines
    to products by ``merchant_sku``, never by title.
    """


@hookspec
def erp_channel_orders(
    session: Session, tenant_id: int, account_id: int, orders: Sequence[Order]
) -> None:
    """:func:`erp_channel_order` for a page of orders at once (the sync delivers each page of
    new and changed orders in one call, the inbox a pushed order as a list of one), so that a
    plugin can store them with a few statements instead of a few per order. Same rules
    (transaction, ordering); the list is in the platform's order and may hold two versions of
    the same order. Implement this hook or :func:`erp_channel_order`, not both: both are called.
    """


@hookspec
def erp_channel_refund(session: Session, tenant_id: int, account_id: int, refund: Refund) -> None:
    """A sales channel delivered ``refund`` (a refund or after-sale request, normalized):
    first seen or changed. Same rules as :func:`erp_channel_order` (transaction, ordering)."""


@hookspec
def erp_channel_payment(
    session: Session, tenant_id: int, account_id: int, payment: Payment
) -> None:
    """A payment channel reported ``payment`` (succeeded, refunded, closed ...) for payment
    account ``account_id``, from a notification or a query. Same rules as
    :func:`erp_channel_order`; ``payment.status`` says what happened."""
