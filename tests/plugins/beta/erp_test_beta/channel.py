"""A minimal sales channel connector, for the channel account tests (talks to no platform)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import timedelta

from erp_core.channels import (
    Cursor,
    Field,
    InboundMessage,
    InvalidMessage,
    Order,
    Page,
    Refund,
    SalesChannel,
    Shipment,
    StockLevel,
)


class BetaChannel(SalesChannel):
    """Knows no orders; records what it was asked to ship and push."""

    secret_fields = (
        Field(name="app_secret", title="App secret"),
        Field(name="session_key", title="Session key", required=False),
    )
    config_fields = (Field(name="region", title="Region", required=False),)
    max_window = timedelta(hours=12)
    page_size = 50

    def fetch_orders(self, cursor: Cursor) -> Page[Order]:
        return Page(items=())

    def get_order(self, order_id: str) -> Order:
        raise KeyError(order_id)

    def ship(self, shipment: Shipment) -> None:
        return None

    def push_stock(self, levels: Sequence[StockLevel], *, full: bool) -> None:
        return None

    def fetch_refunds(self, cursor: Cursor) -> Page[Refund]:
        return Page(items=())

    def parse_message(
        self, headers: Mapping[str, str], body: bytes, query: Mapping[str, str]
    ) -> InboundMessage:
        raise InvalidMessage("beta accepts no pushed messages")
