"""A minimal sales channel connector, for the channel tests (talks to no platform).

Pushed messages are verified as platforms do: header ``x-beta-signature`` is the hex
HMAC-SHA256 of the raw body with the account's ``app_secret``. The body is JSON:
``{"id": "m-1", "topic": "trade.paid", "order": {...}}`` (the order in full),
``{"id": ..., "topic": "trade.changed", "order_id": "o-1"}`` (only named: the inbox calls
:meth:`BetaChannel.get_order`, which answers from :attr:`BetaChannel.orders`) or
``{"id": ..., "topic": "refund.changed", "refund": {...}}``.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, ClassVar

from erp_core.channels import (
    ChannelAuthError,
    Cursor,
    Field,
    InboundMessage,
    InvalidMessage,
    Order,
    OrderLine,
    OrderStatus,
    Page,
    Refund,
    RefundStatus,
    SalesChannel,
    Shipment,
    StockLevel,
    TokenSet,
)

SIGNATURE_HEADER = "x-beta-signature"


def sign(secret: str, body: bytes) -> str:
    """The signature the beta platform sends with ``body``."""
    return hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()


def make_order(data: Mapping[str, Any], account: str = "shop-1") -> Order:
    """An order from the beta platform's JSON (one line)."""
    when = datetime.fromisoformat(str(data["modified_at"]))
    price = Decimal(str(data.get("price", "10.00")))
    qty = int(data.get("qty", 1))
    return Order(
        order_id=str(data["order_id"]),
        account=account,
        status=OrderStatus(str(data.get("status", "paid"))),
        raw_status=str(data.get("status", "paid")).upper(),
        lines=(
            OrderLine(
                line_id=f"{data['order_id']}-1",
                platform_sku_id="sku-1",
                merchant_sku=str(data.get("sku", "SKU-1")),
                title="Beta item",
                quantity=qty,
                unit_price=price,
                paid=price * qty,
            ),
        ),
        total_paid=price * qty,
        created_at=datetime.fromisoformat(str(data.get("created_at", data["modified_at"]))),
        modified_at=when,
    )


def make_refund(data: Mapping[str, Any]) -> Refund:
    return Refund(
        refund_id=str(data["refund_id"]),
        order_id=str(data["order_id"]),
        amount=Decimal(str(data.get("amount", "10.00"))),
        status=RefundStatus(str(data.get("status", "requested"))),
        raw_status=str(data.get("status", "requested")).upper(),
        created_at=datetime.fromisoformat(str(data["modified_at"])),
        modified_at=datetime.fromisoformat(str(data["modified_at"])),
    )


class BetaChannel(SalesChannel):
    """Knows the orders in :attr:`orders`; records nothing it was asked to ship or push."""

    secret_fields = (
        Field(name="app_secret", title="App secret"),
        Field(name="session_key", title="Session key", required=False),
    )
    config_fields = (Field(name="region", title="Region", required=False),)
    max_window = timedelta(hours=12)
    page_size = 50
    failure_status = 403
    failure_body = '{"ok":false}'
    failure_content_type = "application/json"
    #: The platform's orders by id (tests fill it), for :meth:`get_order`.
    orders: ClassVar[dict[str, Order]] = {}

    def fetch_orders(self, cursor: Cursor) -> Page[Order]:
        return Page(items=())

    def refresh_token(self, refresh_token: str) -> TokenSet:
        """The beta platform hands out a new access token derived from the refresh token, valid
        for two hours; a refresh token starting with "revoked" is refused."""
        if refresh_token.startswith("revoked"):
            raise ChannelAuthError("refresh token revoked")
        digest = hashlib.sha256(refresh_token.encode()).hexdigest()[:16]
        return TokenSet(
            access_token=f"beta-access-{digest}",
            expires_at=datetime.now(UTC) + timedelta(hours=2),
        )

    def get_order(self, order_id: str) -> Order:
        if order_id not in self.orders:
            raise LookupError(f"the platform knows no order {order_id}")
        return self.orders[order_id]

    def ship(self, shipment: Shipment) -> None:
        return None

    def push_stock(self, levels: Sequence[StockLevel], *, full: bool) -> None:
        return None

    def fetch_refunds(self, cursor: Cursor) -> Page[Refund]:
        return Page(items=())

    def parse_message(
        self, headers: Mapping[str, str], body: bytes, query: Mapping[str, str]
    ) -> InboundMessage:
        secret = self.context.secrets.get("app_secret", "")
        sent = headers.get(SIGNATURE_HEADER, "")
        if not secret or not hmac.compare_digest(sent.encode(), sign(secret, body).encode()):
            raise InvalidMessage("bad signature")
        try:
            data = json.loads(body)
            message_id, topic = str(data["id"]), str(data["topic"])
            if "order" in data:
                order = make_order(data["order"], self.context.shop_id)
                return self._message(message_id, topic, "order", order.order_id, order)
            if "refund" in data:
                refund = make_refund(data["refund"])
                return self._message(message_id, topic, "refund", refund.refund_id, refund)
            if "order_id" in data:
                return self._message(message_id, topic, "order", str(data["order_id"]), None)
            return self._message(message_id, topic, "", "", None)
        except (ValueError, KeyError, TypeError) as exc:
            raise InvalidMessage(f"unparseable message: {type(exc).__name__}") from None

    @staticmethod
    def _message(
        message_id: str, topic: str, kind: Any, subject_id: str, subject: Order | Refund | None
    ) -> InboundMessage:
        return InboundMessage(
            message_id=message_id,
            topic=topic,
            kind=kind,
            subject_id=subject_id,
            subject=subject,
            reply='{"ok":true}',
            reply_content_type="application/json",
        )
