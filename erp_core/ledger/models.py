"""Ledger tables. Only :mod:`erp_core.ledger.service` writes them.

Journal entries and postings are append-only: the database refuses every UPDATE and DELETE of
them (triggers, see the ``l0000001`` migration); a mistake is corrected by a reversing entry.
"""

from __future__ import annotations

import datetime
from decimal import Decimal

from sqlalchemy import (
    Boolean,
    Date,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from erp_core.db.base import Base, BigId, TenantScoped, utcnow
from erp_core.db.cache import MasterData
from erp_core.db.types import Money, Rate

DIM_LEN = 100


class Account(MasterData, TenantScoped, Base):
    """An account of the tenant's chart. ``parent_id`` makes the tree; an account with
    sub-accounts is an aggregate and takes no postings itself."""

    __tablename__ = "ledger_account"
    __table_args__ = (UniqueConstraint("tenant_id", "code"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    code: Mapped[str] = mapped_column(String(16), nullable=False)
    name_zh: Mapped[str] = mapped_column(String(200), nullable=False)
    name_en: Mapped[str] = mapped_column(String(200), nullable=False)
    type: Mapped[str] = mapped_column(String(16), nullable=False)
    parent_id: Mapped[int | None] = mapped_column(
        BigId, ForeignKey("ledger_account.id"), index=True
    )
    is_active: Mapped[bool] = mapped_column(Boolean, nullable=False, default=True)
    created_at: Mapped[datetime.datetime] = mapped_column(nullable=False, default=utcnow)


class JournalEntry(TenantScoped, Base):
    """A posted journal entry: immutable once inserted."""

    __tablename__ = "ledger_entry"
    __tenant_index__ = False  # the key, date and source indexes start with it
    __table_args__ = (
        UniqueConstraint("tenant_id", "idempotency_key"),
        UniqueConstraint("reverses_id"),
        Index("ix_ledger_entry_tenant_date", "tenant_id", "date"),
        Index("ix_ledger_entry_tenant_source", "tenant_id", "source_type", "source_id"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    date: Mapped[datetime.date] = mapped_column(Date, nullable=False)
    period: Mapped[str] = mapped_column(String(7), nullable=False)
    narration: Mapped[str] = mapped_column(Text, nullable=False)
    idempotency_key: Mapped[str] = mapped_column(String(200), nullable=False)
    #: SHA-256 of the normalized draft: a replay with the same key must carry the same content.
    digest: Mapped[str] = mapped_column(String(64), nullable=False)
    source_type: Mapped[str | None] = mapped_column(String(63))
    source_id: Mapped[str | None] = mapped_column(String(200))
    #: The entry this one reverses (at most one reversal per entry).
    reverses_id: Mapped[int | None] = mapped_column(BigId, ForeignKey("ledger_entry.id"))
    posted_by: Mapped[str] = mapped_column(String(254), nullable=False, default="")
    posted_at: Mapped[datetime.datetime] = mapped_column(nullable=False, default=utcnow)

    postings: Mapped[list[Posting]] = relationship(
        back_populates="entry", order_by="Posting.line", viewonly=True
    )


class Posting(TenantScoped, Base):
    """One line of an entry: an amount on an account, with its dimensions. Immutable."""

    __tablename__ = "ledger_posting"
    __tenant_index__ = False  # the account and dimension indexes start with it
    __table_args__ = (
        UniqueConstraint("entry_id", "line"),
        Index("ix_ledger_posting_tenant_account_date", "tenant_id", "account_id", "date"),
        Index("ix_ledger_posting_tenant_period", "tenant_id", "period"),
        Index("ix_ledger_posting_tenant_channel", "tenant_id", "channel"),
        Index("ix_ledger_posting_tenant_store", "tenant_id", "store"),
        Index("ix_ledger_posting_tenant_sku", "tenant_id", "sku"),
        Index("ix_ledger_posting_tenant_order_ref", "tenant_id", "order_ref"),
        Index("ix_ledger_posting_tenant_warehouse", "tenant_id", "warehouse"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    entry_id: Mapped[int] = mapped_column(BigId, ForeignKey("ledger_entry.id"), nullable=False)
    line: Mapped[int] = mapped_column(Integer, nullable=False)
    account_id: Mapped[int] = mapped_column(BigId, ForeignKey("ledger_account.id"), nullable=False)
    # the entry's date and period, repeated so that balance queries need no join
    date: Mapped[datetime.date] = mapped_column(Date, nullable=False)
    period: Mapped[str] = mapped_column(String(7), nullable=False)
    currency: Mapped[str] = mapped_column(String(3), nullable=False)
    amount: Mapped[Decimal] = mapped_column(Money, nullable=False)
    rate: Mapped[Decimal] = mapped_column(Rate, nullable=False)
    #: ``amount * rate`` in the tenant currency, rounded to its minor unit.
    amount_base: Mapped[Decimal] = mapped_column(Money, nullable=False)
    memo: Mapped[str] = mapped_column(String(500), nullable=False, default="")
    channel: Mapped[str | None] = mapped_column(String(DIM_LEN))
    store: Mapped[str | None] = mapped_column(String(DIM_LEN))
    sku: Mapped[str | None] = mapped_column(String(DIM_LEN))
    order_ref: Mapped[str | None] = mapped_column(String(DIM_LEN))
    warehouse: Mapped[str | None] = mapped_column(String(DIM_LEN))

    entry: Mapped[JournalEntry] = relationship(back_populates="postings", viewonly=True)
    account: Mapped[Account] = relationship(lazy="joined", viewonly=True)


class PeriodLock(TenantScoped, Base):
    """A locked period (``YYYY-MM``): nothing is posted or reversed into it."""

    __tablename__ = "ledger_period_lock"
    __table_args__ = (UniqueConstraint("tenant_id", "period"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    period: Mapped[str] = mapped_column(String(7), nullable=False)
    locked_by: Mapped[str] = mapped_column(String(254), nullable=False, default="")
    locked_at: Mapped[datetime.datetime] = mapped_column(nullable=False, default=utcnow)


class AccountMapping(MasterData, TenantScoped, Base):
    """Which account a purpose (``inventory``, ``cogs``, ...) posts to, for one tenant."""

    __tablename__ = "ledger_account_mapping"
    __table_args__ = (UniqueConstraint("tenant_id", "purpose"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    purpose: Mapped[str] = mapped_column(String(32), nullable=False)
    account_id: Mapped[int] = mapped_column(BigId, ForeignKey("ledger_account.id"), nullable=False)
