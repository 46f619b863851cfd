"""Export a tenant's ledger as a Beancount file (``erp ledger export --format beancount``).

Accounts become ``<Root>:<code>-<English-name>`` paths that follow the chart's tree
(``Liabilities:2202-Accounts-payable:220202-Goods-received-not-invoiced-GR-IR``), with the
Chinese name in the ``open`` directive's metadata. Postings are in their transaction currency;
since every entry balances per currency, no price annotation is needed. Rates, tenant-currency
amounts and dimensions go to posting metadata, and the entry's id, idempotency key, source and
reversal link to transaction metadata.
"""

from __future__ import annotations

import datetime
import re
from collections.abc import Iterator
from zoneinfo import ZoneInfo

from sqlalchemy import func, select
from sqlalchemy.orm import Session, selectinload

from erp_core.ledger.accounts import BEANCOUNT_ROOTS, minor_unit
from erp_core.ledger.models import Account, JournalEntry, Posting
from erp_core.ledger.service import fmt, fmt_rate, tenant_of
from erp_core.ledger.types import DIMENSIONS

NAME_PART = re.compile(r"[^A-Za-z0-9]+")


def quote(value: str) -> str:
    """A Beancount string literal."""
    escaped = (
        value.replace("\\", "\\\\")
        .replace('"', '\\"')
        .replace("\n", "\\n")
        .replace("\r", "\\r")
        .replace("\t", "\\t")
    )
    return f'"{escaped}"'


def component(account: Account) -> str:
    """One account-name component: the code, then the English name made safe."""
    name = NAME_PART.sub("-", account.name_en).strip("-")[:48].strip("-")
    return f"{account.code}-{name}" if name else account.code


def account_names(accounts: list[Account]) -> dict[int, str]:
    """Account id -> full Beancount account name."""
    by_id = {a.id: a for a in accounts}
    names: dict[int, str] = {}

    def name(a: Account) -> str:
        if a.id not in names:
            parent = by_id.get(a.parent_id) if a.parent_id is not None else None
            prefix = name(parent) if parent is not None else BEANCOUNT_ROOTS[a.type]
            names[a.id] = f"{prefix}:{component(a)}"
        return names[a.id]

    for a in accounts:
        name(a)
    return names


def iter_beancount(session: Session, *, until: datetime.date | None = None) -> Iterator[str]:
    """The lines of the tenant's ledger in Beancount syntax, up to ``until`` (inclusive)."""
    tenant = tenant_of(session)
    accounts = list(session.scalars(select(Account).order_by(Account.code)))
    names = account_names(accounts)
    used = select(Posting.account_id, func.min(Posting.date)).group_by(Posting.account_id)
    if until is not None:
        used = used.where(Posting.date <= until)
    first_use = dict(session.execute(used).all())
    parents = {a.parent_id for a in accounts if a.parent_id is not None}
    default_open = (
        min(first_use.values())
        if first_use
        else (until or datetime.datetime.now(ZoneInfo(tenant.timezone)).date())
    )
    yield f";; ledger of {tenant.slug} exported by erp"
    yield f"option {quote('title')} {quote(tenant.name)}"
    yield f"option {quote('operating_currency')} {quote(tenant.currency)}"
    yield ""
    for a in accounts:
        if a.id in parents:  # aggregates take no postings; their sub-accounts are opened
            continue
        yield f"{first_use.get(a.id, default_open).isoformat()} open {names[a.id]}"
        yield f"  name_zh: {quote(a.name_zh)}"
        yield f"  name_en: {quote(a.name_en)}"
        yield f"  code: {quote(a.code)}"
    yield ""
    q = (
        select(JournalEntry)
        .options(selectinload(JournalEntry.postings))
        .order_by(JournalEntry.date, JournalEntry.id)
    )
    if until is not None:
        q = q.where(JournalEntry.date <= until)
    base_places = minor_unit(tenant.currency)
    for entry in session.scalars(q.execution_options(yield_per=500)):
        yield f"{entry.date.isoformat()} * {quote(entry.narration)}"
        yield f"  erp_entry: {quote(str(entry.id))}"
        yield f"  idempotency_key: {quote(entry.idempotency_key)}"
        if entry.source_type:
            yield f"  source_type: {quote(entry.source_type)}"
        if entry.source_id:
            yield f"  source_id: {quote(entry.source_id)}"
        if entry.reverses_id is not None:
            yield f"  reverses: {quote(str(entry.reverses_id))}"
        for p in entry.postings:
            amount = fmt(p.amount, minor_unit(p.currency))
            yield f"  {names[p.account_id]}  {amount} {p.currency}"
            if p.currency != tenant.currency:
                yield f"    rate: {quote(fmt_rate(p.rate))}"
                base = fmt(p.amount_base, base_places)
                yield f"    amount_base: {quote(f'{base} {tenant.currency}')}"
            if p.memo:
                yield f"    memo: {quote(p.memo)}"
            for dim in DIMENSIONS:
                value = getattr(p, "order_ref" if dim == "order" else dim)
                if value is not None:
                    yield f"    {dim}: {quote(value)}"
        yield ""


def export_beancount(session: Session, *, until: datetime.date | None = None) -> str:
    return "\n".join(iter_beancount(session, until=until)) + "\n"
