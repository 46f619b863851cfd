"""What plugins hand to the ledger (drafts) and what the ledger reports (balances).

Amounts are :class:`~decimal.Decimal`, never float. Signs follow double entry: a debit is
positive, a credit negative, so the postings of an entry add up to zero in each currency.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Literal

#: The five account types of the chart of accounts.
AccountType = Literal["asset", "liability", "equity", "income", "expense"]
ACCOUNT_TYPES: tuple[AccountType, ...] = ("asset", "liability", "equity", "income", "expense")

#: Posting dimensions, as named in drafts, queries and the API.
DIMENSIONS: tuple[str, ...] = ("channel", "store", "sku", "order", "warehouse")


class LedgerError(ValueError):
    """A ledger operation was refused; the message is meant for users, as is.

    Nothing was written when it is raised.
    """


@dataclass(frozen=True, slots=True, kw_only=True)
class PostingDraft:
    """One line of an entry to post."""

    account: str  # account code, e.g. "1405"
    amount: Decimal  # transaction currency; debit > 0, credit < 0; never 0
    currency: str | None = None  # default: the tenant's currency
    rate: Decimal | None = None  # to the tenant currency; 1 for it, required otherwise
    memo: str = ""
    channel: str | None = None
    store: str | None = None
    sku: str | None = None
    order: str | None = None
    warehouse: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class EntryDraft:
    """A journal entry to post: one business event, told once (``idempotency_key``)."""

    date: datetime.date  # posting date (tenant's calendar); its period is YYYY-MM
    narration: str
    postings: tuple[PostingDraft, ...]
    idempotency_key: str
    source_type: str | None = None
    source_id: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class TrialBalanceRow:
    """The balance of one postable account in one currency up to a date.

    ``debit`` and ``credit`` are the totals of the debit and credit postings (``credit`` is
    negative), ``balance`` their sum; ``balance_base`` is the balance in the tenant currency.
    """

    account: str
    name_zh: str
    name_en: str
    type: AccountType
    currency: str
    debit: Decimal
    credit: Decimal
    balance: Decimal
    balance_base: Decimal


@dataclass(frozen=True, slots=True, kw_only=True)
class BalanceRow:
    """A balance of one account in one currency, for one period and dimension values when
    grouped by them (keys of ``dimensions`` are the ``group_by`` names)."""

    account: str
    currency: str
    amount: Decimal
    amount_base: Decimal
    period: str | None = None
    dimensions: dict[str, str | None] = field(default_factory=dict)
