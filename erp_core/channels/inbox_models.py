"""The inbox: pushed messages as received (kept for replay), and what was delivered per subject."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from erp_core.db.base import Base, BigId, TenantScoped, utcnow

#: Message states: stored and not yet processed, processed, processing failed.
RECEIVED = "received"
PROCESSED = "processed"
FAILED = "failed"
STATES = (RECEIVED, PROCESSED, FAILED)


class InboxMessage(TenantScoped, Base):
    """One verified message a platform pushed to ``/hooks/{connector}/{account_id}``.

    Stored (and committed) before it is processed, with the raw request the connector
    verified (``headers`` without cookies or credentials, ``body``, ``query``) so that
    processing, and ``erp inbox replay``, parse it again exactly as received. A message
    delivered again has the same ``message_id`` and is stored once.
    """

    __tablename__ = "core_inbox_message"
    __table_args__ = (
        UniqueConstraint("tenant_id", "account_id", "message_id"),
        Index("ix_core_inbox_message_tenant_state", "tenant_id", "state", "id"),
    )
    __tenant_index__ = False  # the unique constraint and the state index start with it

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    account_id: Mapped[int] = mapped_column(
        BigId,
        ForeignKey("core_channel_account.id", ondelete="CASCADE"),
        nullable=False,
        index=True,
    )
    connector: Mapped[str] = mapped_column(String(40), nullable=False)
    message_id: Mapped[str] = mapped_column(String(128), nullable=False)
    topic: Mapped[str] = mapped_column(String(128), nullable=False, default="")
    kind: Mapped[str] = mapped_column(String(16), nullable=False, default="")
    subject_id: Mapped[str] = mapped_column(String(128), nullable=False, default="")
    headers: Mapped[dict[str, Any]] = mapped_column(JSON, nullable=False, default=dict)
    body: Mapped[bytes] = mapped_column(LargeBinary, nullable=False)
    query: Mapped[dict[str, Any]] = mapped_column(JSON, nullable=False, default=dict)
    received_at: Mapped[datetime] = mapped_column(nullable=False, default=utcnow)
    state: Mapped[str] = mapped_column(String(16), nullable=False, default=RECEIVED)
    attempts: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    #: What the last processing did (delivered, skipped as older ...), for people.
    result: Mapped[str] = mapped_column(String(300), nullable=False, default="")
    last_error: Mapped[str | None] = mapped_column(Text, nullable=True)
    processed_at: Mapped[datetime | None] = mapped_column(nullable=True)

    def __repr__(self) -> str:
        return (
            f"<InboxMessage id={self.id} account={self.account_id} {self.message_id!r}"
            f" {self.topic!r} {self.state}>"
        )


class InboxSubject(TenantScoped, Base):
    """The newest version of an order, refund or payment the inbox delivered to the hooks.

    ``version`` is the object's ``modified_at`` (for payments, the message's ``occurred_at``,
    else the payment's ``paid_at``); an older or equal version is not delivered again.
    """

    __tablename__ = "core_inbox_subject"
    __table_args__ = (UniqueConstraint("tenant_id", "account_id", "kind", "subject_id"),)
    __tenant_index__ = False  # the unique constraint starts with it

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    account_id: Mapped[int] = mapped_column(
        BigId,
        ForeignKey("core_channel_account.id", ondelete="CASCADE"),
        nullable=False,
        index=True,
    )
    kind: Mapped[str] = mapped_column(String(16), nullable=False)
    subject_id: Mapped[str] = mapped_column(String(128), nullable=False)
    version: Mapped[datetime] = mapped_column(nullable=False)
    message_id: Mapped[str] = mapped_column(String(128), nullable=False)
    updated_at: Mapped[datetime] = mapped_column(nullable=False, default=utcnow, onupdate=utcnow)
