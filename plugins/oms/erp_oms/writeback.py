"""Write-back of tracking numbers to the platforms, through the shops' connectors."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from sqlalchemy.orm import Session

from erp_core.channels import service as channels
from erp_core.channels.interfaces import SalesChannel
from erp_core.channels.models import ChannelAccount
from erp_core.db.base import utcnow
from erp_core.plugins.registry import PluginRegistry
from erp_core.settings import Settings
from erp_oms.models import Order
from erp_oms.service import (
    drop_writebacks,
    due_trails,
    due_writeback_rows,
    order_shops,
    refresh_trail,
    writeback_many,
)

log = logging.getLogger(__name__)


def channel_for(
    session: Session, registry: PluginRegistry, settings: Settings, account_id: int
) -> SalesChannel:
    account = session.get(ChannelAccount, account_id)
    if account is None:
        raise LookupError(f"no channel account {account_id}")
    cls = channels.connector_class(registry, account.connector)
    if not issubclass(cls, SalesChannel):
        raise TypeError(f"{account.connector} is not a sales channel")
    return cls(channels.account_context(session, account, settings))


def _channels(
    session: Session, registry: PluginRegistry, settings: Settings
) -> Callable[[int], Any]:
    """One channel instance per shop (None for a shop that cannot be used now)."""
    cache: dict[int, Any] = {}

    def get(account_id: int) -> Any:
        if account_id not in cache:
            try:
                cache[account_id] = channel_for(session, registry, settings, account_id)
            except Exception as exc:  # the account is gone or its connector is not installed
                cache[account_id] = None
                log.warning("oms: shop %s unusable: %s", account_id, exc)
        return cache[account_id]

    return get


def run_trails(
    session: Session, registry: PluginRegistry, settings: Settings, *, limit: int = 100
) -> dict[str, int]:
    """Ask the platforms for the trail of every due parcel (see ``service.due_trails``)."""
    got = missed = delivered = 0
    channel = _channels(session, registry, settings)
    for parcel in due_trails(session, limit=limit):
        order = session.get(Order, parcel.order_id)
        chan = channel(order.channel_account_id) if order and order.channel_account_id else None
        if chan is None:
            parcel.trail_checked_at = utcnow()
            missed += 1
            continue
        if refresh_trail(session, parcel, chan):
            got += 1
            delivered += parcel.delivered_at is not None
        else:
            missed += 1
    session.flush()
    return {"refreshed": got, "missed": missed, "delivered": delivered}


def run_due(
    session: Session, registry: PluginRegistry, settings: Settings, *, limit: int = 100
) -> dict[str, int]:
    """Write back every due parcel; one channel instance per shop."""
    done = failed = 0
    cache: dict[int, Any] = {}
    by_shop: dict[int, list[Any]] = {}
    due = due_writeback_rows(session, limit=limit)  # rows: read, written by id
    shops = order_shops(session, (p.order_id for p in due))
    drop_writebacks(session, [p.id for p in due if shops.get(p.order_id) is None])
    for parcel in due:
        acc = shops.get(parcel.order_id)
        if acc is None:
            continue
        try:
            if acc not in cache:
                cache[acc] = channel_for(session, registry, settings, acc)
        except Exception as exc:  # the account is gone or its connector is not installed
            cache[acc] = None
            log.warning("oms write-back: shop %s unusable: %s", acc, exc)
        if cache[acc] is None:
            failed += 1
            continue
        by_shop.setdefault(acc, []).append(parcel)
    for acc, parcels in by_shop.items():  # each shop's parcels together, calls in parallel
        outcomes = writeback_many(session, parcels, cache[acc])
        done += sum(outcomes)
        failed += len(outcomes) - sum(outcomes)
    session.flush()
    return {"done": done, "failed": failed}
