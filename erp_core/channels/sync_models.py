"""Sync state: a durable cursor per (account, stream) and the versions of objects delivered."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Index, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from erp_core.db.base import Base, BigId, TenantScoped, utcnow


class ChannelCursor(TenantScoped, Base):
    """Where the sync of one account's stream (``orders`` or ``refunds``) stands.

    ``synced_until`` is the end of the last window whose every page is committed. While a
    window is in progress, ``window_start``/``window_end`` name it and ``page_token`` is the
    connector's token of the next page to fetch. The row changes only in the transaction that
    delivered the page it describes.
    """

    __tablename__ = "core_channel_cursor"
    __tenant_index__ = False
    __table_args__ = (UniqueConstraint("tenant_id", "account_id", "stream"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    account_id: Mapped[int] = mapped_column(
        BigId, ForeignKey("core_channel_account.id", ondelete="CASCADE"), nullable=False
    )
    stream: Mapped[str] = mapped_column(String(16), nullable=False)
    synced_until: Mapped[datetime | None] = mapped_column(nullable=True)
    window_start: Mapped[datetime | None] = mapped_column(nullable=True)
    window_end: Mapped[datetime | None] = mapped_column(nullable=True)
    page_token: Mapped[str | None] = mapped_column(Text, nullable=True)
    updated_at: Mapped[datetime] = mapped_column(nullable=False, default=utcnow, onupdate=utcnow)


class ChannelObject(TenantScoped, Base):
    """The last delivered version of one platform object (order, refund) of an account.

    Unique by (tenant, account, kind, platform id): a re-fetched unchanged object (same
    digest) is not delivered again, a changed one once per version, an older one never.
    """

    __tablename__ = "core_channel_object"
    __tenant_index__ = False
    __table_args__ = (
        UniqueConstraint("tenant_id", "account_id", "kind", "platform_id"),
        Index("ix_core_channel_object_account_id", "account_id"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    account_id: Mapped[int] = mapped_column(
        BigId, ForeignKey("core_channel_account.id", ondelete="CASCADE"), nullable=False
    )
    kind: Mapped[str] = mapped_column(String(16), nullable=False)
    platform_id: Mapped[str] = mapped_column(String(128), nullable=False)
    modified_at: Mapped[datetime] = mapped_column(nullable=False)
    digest: Mapped[str] = mapped_column(String(64), nullable=False)
    updated_at: Mapped[datetime] = mapped_column(nullable=False, default=utcnow, onupdate=utcnow)
