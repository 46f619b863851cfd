"""Channel accounts: a tenant's shop on a marketplace or its account at a payment provider."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Boolean, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from erp_core.db.base import Base, BigId, TenantScoped, utcnow


class ChannelAccount(TenantScoped, Base):
    """One shop (sales channel) or merchant account (payment channel) of a tenant.

    ``secrets``, ``access_token`` and ``refresh_token`` hold ciphertexts made by
    :mod:`erp_core.channels.crypto` (bound to this tenant, this row and the column); nothing
    but :func:`erp_core.channels.service.account_secrets` decrypts them. ``config`` holds the
    connector's non-secret settings. ``secret_names`` lists which secret fields are set.
    """

    __tablename__ = "core_channel_account"
    __table_args__ = (UniqueConstraint("tenant_id", "connector", "shop_id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    connector: Mapped[str] = mapped_column(String(40), nullable=False)
    kind: Mapped[str] = mapped_column(String(16), nullable=False)
    name: Mapped[str] = mapped_column(String(200), nullable=False)
    #: The platform's id of the shop, or the payment provider's app id.
    shop_id: Mapped[str] = mapped_column(String(128), nullable=False)
    app_key: Mapped[str] = mapped_column(String(200), nullable=False, default="")
    config: Mapped[dict[str, Any]] = mapped_column(JSON, nullable=False, default=dict)
    secrets: Mapped[str | None] = mapped_column(Text, nullable=True)
    secret_names: Mapped[list[str]] = mapped_column(JSON, nullable=False, default=list)
    access_token: Mapped[str | None] = mapped_column(Text, nullable=True)
    access_token_expires_at: Mapped[datetime | None] = mapped_column(nullable=True)
    refresh_token: Mapped[str | None] = mapped_column(Text, nullable=True)
    refresh_token_expires_at: Mapped[datetime | None] = mapped_column(nullable=True)
    active: Mapped[bool] = mapped_column(Boolean, nullable=False, default=True)
    created_at: Mapped[datetime] = mapped_column(nullable=False, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(nullable=False, default=utcnow, onupdate=utcnow)

    def __repr__(self) -> str:
        # never the ciphertexts (nor, a fortiori, anything decrypted)
        return (
            f"<ChannelAccount id={self.id} tenant={self.tenant_id} {self.connector}:{self.shop_id}"
            f" active={self.active}>"
        )
