"""JSON API of the ledger, under ``/api/v1/ledger``.

Money travels as strings (``"12.50"``): a JSON number with a fraction is refused with a 422,
since it may already have been rounded by whoever wrote it as a float.
"""

from __future__ import annotations

import datetime
from decimal import Decimal, InvalidOperation
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Query, Response
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, create_model
from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from erp_core.api.params import MAX_ID, Id
from erp_core.auth.deps import DbSession, Hooks, require
from erp_core.auth.principal import Principal
from erp_core.ledger import service
from erp_core.ledger.accounts import PURPOSES, minor_unit
from erp_core.ledger.models import Account, JournalEntry, PeriodLock, Posting
from erp_core.ledger.types import DIMENSIONS, EntryDraft, PostingDraft
from erp_core.tenancy.models import Tenant

router = APIRouter(prefix="/ledger", tags=["ledger"])

READ = "core.ledger.read"
POST = "core.ledger.post"
MANAGE = "core.ledger.manage"


def _decimal(value: Any) -> Any:
    if isinstance(value, bool):
        raise ValueError('must be a decimal number sent as a string, e.g. "12.50"')
    if isinstance(value, float):
        raise ValueError(
            'money and rates are sent as strings (e.g. "12.50"), not as JSON numbers with '
            "a fraction, which may already have lost precision"
        )
    if isinstance(value, int):
        return Decimal(value)
    if isinstance(value, str):
        if len(value) > 40:
            raise ValueError("a number of at most 40 characters")
        try:
            d = Decimal(value.strip())
        except InvalidOperation:
            raise ValueError(f"{value[:40]!r} is not a decimal number") from None
        if not d.is_finite():
            raise ValueError("must be a finite number")
        return d
    raise ValueError('must be a decimal number sent as a string, e.g. "12.50"')


DecimalStr = Annotated[Decimal, BeforeValidator(_decimal)]
Dim = Annotated[str | None, Field(default=None, max_length=100)]


class PostingIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    account: str = Field(min_length=1, max_length=16, description="account code, e.g. 1405")
    amount: DecimalStr = Field(description='debit > 0, credit < 0; a string such as "-12.50"')
    currency: str | None = Field(default=None, pattern=r"^[A-Z]{3}$")
    rate: DecimalStr | None = Field(default=None, description="to the tenant currency")
    memo: str = Field(default="", max_length=500)
    channel: Dim = None
    store: Dim = None
    sku: Dim = None
    order: Dim = None
    warehouse: Dim = None


class EntryIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    date: datetime.date
    narration: str = Field(min_length=1, max_length=2000)
    idempotency_key: str = Field(min_length=1, max_length=200)
    source_type: str | None = Field(default=None, max_length=63)
    source_id: str | None = Field(default=None, max_length=200)
    postings: list[PostingIn] = Field(min_length=2, max_length=1000)


class PostingOut(BaseModel):
    line: int
    account: str
    account_name_zh: str
    account_name_en: str
    currency: str
    amount: str
    rate: str
    amount_base: str
    memo: str
    channel: str | None
    store: str | None
    sku: str | None
    order: str | None
    warehouse: str | None


class EntryOut(BaseModel):
    id: int
    date: datetime.date
    period: str
    narration: str
    idempotency_key: str
    source_type: str | None
    source_id: str | None
    reverses_id: int | None
    reversed_by_id: int | None
    posted_by: str
    posted_at: datetime.datetime
    postings: list[PostingOut]


class EntryPage(BaseModel):
    items: list[EntryOut]
    next_before_id: int | None


class ReverseIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: str = Field(min_length=1, max_length=500)
    date: datetime.date | None = None


class AccountOut(BaseModel):
    id: int
    code: str
    name_zh: str
    name_en: str
    type: str
    parent_id: int | None
    parent_code: str | None
    depth: int
    postable: bool
    is_active: bool


class AccountIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    code: str = Field(max_length=16)
    name_zh: str = Field(max_length=200)
    name_en: str = Field(max_length=200)
    type: str | None = Field(default=None, max_length=16)
    parent: str | None = Field(default=None, max_length=16, description="parent account code")


class AccountPatch(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name_zh: str | None = Field(default=None, max_length=200)
    name_en: str | None = Field(default=None, max_length=200)
    is_active: bool | None = None
    type: str | None = Field(default=None, max_length=16)


class BalanceOut(BaseModel):
    account: str
    currency: str
    amount: str
    amount_base: str
    period: str | None
    dimensions: dict[str, str | None]


class TrialBalanceLine(BaseModel):
    account: str
    name_zh: str
    name_en: str
    type: str
    currency: str
    debit: str
    credit: str
    balance: str
    balance_base: str


class CurrencyTotal(BaseModel):
    currency: str
    debit: str
    credit: str
    balance: str
    balance_base: str


class TrialBalanceOut(BaseModel):
    until: datetime.date | None
    tenant_currency: str
    rows: list[TrialBalanceLine]
    totals: list[CurrencyTotal]


class PeriodIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    period: str = Field(max_length=7, description="YYYY-MM")


class PeriodOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    period: str
    locked_by: str
    locked_at: datetime.datetime


class MappingLine(BaseModel):
    purpose: str
    account: str
    description: str


# --- helpers ------------------------------------------------------------------------------


def _tenant(db: Session, p: Principal) -> Tenant:
    tenant = db.get(Tenant, p.tenant_id)
    assert tenant is not None
    return tenant


def _actor(p: Principal) -> str:
    """Who did it, as entries and locks record it: the e-mail, and the token if one was used."""
    return p.email if p.via != "token" else f"{p.email} via {p.label}"


def _money(amount: Decimal, currency: str) -> str:
    return service.fmt(amount, minor_unit(currency))


def _entry_out(entry: JournalEntry, reversed_by: int | None, base: str) -> EntryOut:
    return EntryOut(
        id=entry.id,
        date=entry.date,
        period=entry.period,
        narration=entry.narration,
        idempotency_key=entry.idempotency_key,
        source_type=entry.source_type,
        source_id=entry.source_id,
        reverses_id=entry.reverses_id,
        reversed_by_id=reversed_by,
        posted_by=entry.posted_by,
        posted_at=entry.posted_at,
        postings=[
            PostingOut(
                line=p.line,
                account=p.account.code,
                account_name_zh=p.account.name_zh,
                account_name_en=p.account.name_en,
                currency=p.currency,
                amount=_money(p.amount, p.currency),
                rate=service.fmt_rate(p.rate),
                amount_base=_money(p.amount_base, base),
                memo=p.memo,
                channel=p.channel,
                store=p.store,
                sku=p.sku,
                order=p.order_ref,
                warehouse=p.warehouse,
            )
            for p in entry.postings
        ],
    )


def _reversals(db: Session, ids: list[int]) -> dict[int, int]:
    if not ids:
        return {}
    q = select(JournalEntry.reverses_id, JournalEntry.id).where(JournalEntry.reverses_id.in_(ids))
    return {orig: rev for orig, rev in db.execute(q) if orig is not None}


def _get_entry(db: Session, entry_id: int) -> JournalEntry:
    entry = db.get(JournalEntry, entry_id)
    if entry is None:
        raise HTTPException(404, f"no journal entry {entry_id} in this tenant")
    return entry


def _accounts_out(db: Session) -> list[AccountOut]:
    accounts = list(db.scalars(select(Account).order_by(Account.code)))
    by_id = {a.id: a for a in accounts}
    parents = {a.parent_id for a in accounts if a.parent_id is not None}

    def depth(a: Account) -> int:
        n = 0
        while a.parent_id is not None and a.parent_id in by_id and n < 16:
            a = by_id[a.parent_id]
            n += 1
        return n

    return [
        AccountOut(
            id=a.id,
            code=a.code,
            name_zh=a.name_zh,
            name_en=a.name_en,
            type=a.type,
            parent_id=a.parent_id,
            parent_code=by_id[a.parent_id].code if a.parent_id in by_id else None,
            depth=depth(a),
            postable=a.id not in parents,
            is_active=a.is_active,
        )
        for a in accounts
    ]


def _account_out(db: Session, account_id: int) -> AccountOut:
    found = next((a for a in _accounts_out(db) if a.id == account_id), None)
    if found is None:
        raise HTTPException(404, f"no account {account_id} in this tenant")
    return found


# --- accounts -----------------------------------------------------------------------------


@router.get("/accounts", response_model=list[AccountOut])
def list_accounts(db: DbSession, p: Principal = Depends(require(READ))) -> list[AccountOut]:
    """The chart of accounts in code order; ``parent_id`` and ``depth`` make the tree."""
    return _accounts_out(db)


@router.post("/accounts", response_model=AccountOut, status_code=201)
def create_account(
    body: AccountIn, db: DbSession, p: Principal = Depends(require(MANAGE))
) -> AccountOut:
    acc = service.create_account(
        db,
        code=body.code,
        name_zh=body.name_zh,
        name_en=body.name_en,
        type=body.type,
        parent=body.parent,
        actor=_actor(p),
    )
    out = _account_out(db, acc.id)
    db.commit()
    return out


@router.get("/accounts/{account_id}", response_model=AccountOut)
def get_account(account_id: Id, db: DbSession, p: Principal = Depends(require(READ))) -> AccountOut:
    return _account_out(db, account_id)


@router.patch("/accounts/{account_id}", response_model=AccountOut)
def patch_account(
    account_id: Id,
    body: AccountPatch,
    db: DbSession,
    p: Principal = Depends(require(MANAGE)),
) -> AccountOut:
    """Rename or (de)activate an account; its type changes only while it has no postings."""
    acc = db.get(Account, account_id)
    if acc is None:
        raise HTTPException(404, f"no account {account_id} in this tenant")
    service.update_account(
        db,
        acc,
        name_zh=body.name_zh,
        name_en=body.name_en,
        is_active=body.is_active,
        type=body.type,
        actor=_actor(p),
    )
    out = _account_out(db, acc.id)
    db.commit()
    return out


# --- entries ------------------------------------------------------------------------------


@router.get("/entries", response_model=EntryPage)
def list_entries(
    db: DbSession,
    p: Principal = Depends(require(READ)),
    date_from: datetime.date | None = None,
    date_to: datetime.date | None = None,
    account: str | None = Query(default=None, max_length=16),
    source_type: str | None = Query(default=None, max_length=63),
    source_id: str | None = Query(default=None, max_length=200),
    channel: str | None = Query(default=None, max_length=100),
    store: str | None = Query(default=None, max_length=100),
    sku: str | None = Query(default=None, max_length=100),
    order: str | None = Query(default=None, max_length=100),
    warehouse: str | None = Query(default=None, max_length=100),
    before_id: int | None = Query(default=None, ge=1, le=MAX_ID),
    limit: int = Query(default=50, ge=1, le=500),
) -> EntryPage:
    """Entries, newest first, filtered; page on with ``before_id=next_before_id``. Filters on
    an account (sub-accounts included) or dimension keep entries with a matching posting."""
    q = (
        select(JournalEntry)
        .options(selectinload(JournalEntry.postings))
        .order_by(JournalEntry.id.desc())
        .limit(limit + 1)
    )
    if date_from is not None:
        q = q.where(JournalEntry.date >= date_from)
    if date_to is not None:
        q = q.where(JournalEntry.date <= date_to)
    if source_type is not None:
        q = q.where(JournalEntry.source_type == source_type)
    if source_id is not None:
        q = q.where(JournalEntry.source_id == source_id)
    if before_id is not None:
        q = q.where(JournalEntry.id < before_id)
    lines = select(Posting.entry_id)
    filtered = False
    if account is not None:
        if service.account_by_code(db, account) is None:
            raise service.LedgerError(f"unknown account {account!r}")
        codes = select(Account.id).where(Account.code.startswith(account, autoescape=True))
        lines = lines.where(Posting.account_id.in_(codes))
        filtered = True
    for dim, value in zip(DIMENSIONS, (channel, store, sku, order, warehouse), strict=True):
        if value is not None:
            lines = lines.where(getattr(Posting, service.DIM_COLUMNS[dim]) == value)
            filtered = True
    if filtered:
        q = q.where(JournalEntry.id.in_(lines))
    rows = list(db.scalars(q))
    more = len(rows) > limit
    rows = rows[:limit]
    reversed_by = _reversals(db, [e.id for e in rows])
    base = _tenant(db, p).currency
    return EntryPage(
        items=[_entry_out(e, reversed_by.get(e.id), base) for e in rows],
        next_before_id=rows[-1].id if more and rows else None,
    )


@router.post("/entries", response_model=EntryOut, status_code=201)
def post_entry(
    body: EntryIn,
    response: Response,
    db: DbSession,
    hooks: Hooks,
    p: Principal = Depends(require(POST)),
) -> EntryOut:
    """Post an entry. The same ``idempotency_key`` again with the same content answers 200
    with the entry already posted; with other content, 422."""
    draft = EntryDraft(
        date=body.date,
        narration=body.narration,
        idempotency_key=body.idempotency_key,
        source_type=body.source_type,
        source_id=body.source_id,
        postings=tuple(
            PostingDraft(
                account=x.account,
                amount=x.amount,
                currency=x.currency,
                rate=x.rate,
                memo=x.memo,
                channel=x.channel,
                store=x.store,
                sku=x.sku,
                order=x.order,
                warehouse=x.warehouse,
            )
            for x in body.postings
        ),
    )
    existed = db.scalar(
        select(JournalEntry.id).where(JournalEntry.idempotency_key == body.idempotency_key)
    )
    entry = service.post_entry(db, draft, hooks=hooks, actor=_actor(p))
    out = _entry_out(entry, service.reversal_of(db, entry.id), _tenant(db, p).currency)
    db.commit()
    if existed is not None:
        response.status_code = 200
    return out


@router.get("/entries/{entry_id}", response_model=EntryOut)
def get_entry(entry_id: Id, db: DbSession, p: Principal = Depends(require(READ))) -> EntryOut:
    entry = _get_entry(db, entry_id)
    return _entry_out(entry, service.reversal_of(db, entry.id), _tenant(db, p).currency)


@router.post("/entries/{entry_id}/reverse", response_model=EntryOut, status_code=201)
def reverse_entry(
    entry_id: Id,
    body: ReverseIn,
    db: DbSession,
    hooks: Hooks,
    p: Principal = Depends(require(POST)),
) -> EntryOut:
    """Post the reversing entry of ``entry_id`` (dated ``date``, default the original's)."""
    _get_entry(db, entry_id)
    rev = service.reverse_entry(
        db, entry_id, date=body.date, reason=body.reason, hooks=hooks, actor=_actor(p)
    )
    out = _entry_out(rev, None, _tenant(db, p).currency)
    db.commit()
    return out


# --- reports ------------------------------------------------------------------------------


@router.get("/balances", response_model=list[BalanceOut])
def get_balances(
    db: DbSession,
    p: Principal = Depends(require(READ)),
    account: str | None = Query(default=None, max_length=16),
    period: str | None = Query(default=None, max_length=7, description="YYYY-MM"),
    date_from: datetime.date | None = None,
    date_to: datetime.date | None = None,
    group_by: list[str] = Query(
        default=[], max_length=6, description="period, channel, store, sku, order, warehouse"
    ),
    channel: str | None = Query(default=None, max_length=100),
    store: str | None = Query(default=None, max_length=100),
    sku: str | None = Query(default=None, max_length=100),
    order: str | None = Query(default=None, max_length=100),
    warehouse: str | None = Query(default=None, max_length=100),
) -> list[BalanceOut]:
    """Balances per account and currency (sub-accounts of ``account`` included), optionally
    per period and dimension values (``group_by``), filtered by dimension values."""
    where = {
        dim: value
        for dim, value in zip(DIMENSIONS, (channel, store, sku, order, warehouse), strict=True)
        if value is not None
    }
    rows = service.balances(
        db,
        account=account,
        period=period,
        since=date_from,
        until=date_to,
        group_by=group_by,
        where=where,
    )
    base = _tenant(db, p).currency
    return [
        BalanceOut(
            account=r.account,
            currency=r.currency,
            amount=_money(r.amount, r.currency),
            amount_base=_money(r.amount_base, base),
            period=r.period,
            dimensions=r.dimensions,
        )
        for r in rows
    ]


@router.get("/trial-balance", response_model=TrialBalanceOut)
def get_trial_balance(
    db: DbSession,
    p: Principal = Depends(require(READ)),
    until: datetime.date | None = Query(default=None, description="as of this date"),
) -> TrialBalanceOut:
    """Every account's balance per currency as of ``until``; each currency's total is zero."""
    base = _tenant(db, p).currency
    rows = service.trial_balance(db, until=until)
    totals: dict[str, list[Decimal]] = {}
    for r in rows:
        t = totals.setdefault(r.currency, [Decimal(0)] * 4)
        for i, v in enumerate((r.debit, r.credit, r.balance, r.balance_base)):
            t[i] += v
    return TrialBalanceOut(
        until=until,
        tenant_currency=base,
        rows=[
            TrialBalanceLine(
                account=r.account,
                name_zh=r.name_zh,
                name_en=r.name_en,
                type=r.type,
                currency=r.currency,
                debit=_money(r.debit, r.currency),
                credit=_money(r.credit, r.currency),
                balance=_money(r.balance, r.currency),
                balance_base=_money(r.balance_base, base),
            )
            for r in rows
        ],
        totals=[
            CurrencyTotal(
                currency=cur,
                debit=_money(t[0], cur),
                credit=_money(t[1], cur),
                balance=_money(t[2], cur),
                balance_base=_money(t[3], base),
            )
            for cur, t in sorted(totals.items())
        ],
    )


# --- periods ------------------------------------------------------------------------------


@router.get("/periods", response_model=list[PeriodOut])
def list_periods(db: DbSession, p: Principal = Depends(require(READ))) -> list[PeriodLock]:
    """The locked periods."""
    return service.locked_periods(db)


@router.post("/periods/lock", response_model=PeriodOut)
def lock_period(
    body: PeriodIn, db: DbSession, p: Principal = Depends(require(MANAGE))
) -> PeriodOut:
    """Lock a period: nothing more is posted or reversed into it."""
    lock = service.lock_period(db, body.period, actor=_actor(p))
    out = PeriodOut(period=lock.period, locked_by=lock.locked_by, locked_at=lock.locked_at)
    db.commit()
    return out


@router.post("/periods/unlock", status_code=204)
def unlock_period(body: PeriodIn, db: DbSession, p: Principal = Depends(require(MANAGE))) -> None:
    service.unlock_period(db, body.period, actor=_actor(p))
    db.commit()


# --- account mapping ----------------------------------------------------------------------


def _mapping_out(mapping: dict[str, str]) -> list[MappingLine]:
    return [
        MappingLine(purpose=x.name, account=mapping[x.name], description=x.description)
        for x in PURPOSES
    ]


@router.get("/account-mapping", response_model=list[MappingLine])
def get_mapping(db: DbSession, p: Principal = Depends(require(READ))) -> list[MappingLine]:
    """Which account each purpose posts to (stock valuation and plugins use it)."""
    return _mapping_out(service.get_mapping(db))


#: ``{"inventory": "1405", ...}``: one optional account code per purpose.
MappingIn: type[BaseModel] = create_model(
    "MappingIn",
    __config__=ConfigDict(extra="forbid"),
    **{
        x.name: (str | None, Field(default=None, max_length=16, description=x.description))
        for x in PURPOSES
    },  # type: ignore[call-overload]
)


@router.put("/account-mapping", response_model=list[MappingLine])
def put_mapping(
    body: MappingIn,
    db: DbSession,
    p: Principal = Depends(require(MANAGE)),
) -> list[MappingLine]:
    """Map the given purposes (``{"inventory": "1405", ...}``); others keep their account."""
    changes = {k: v for k, v in body.model_dump().items() if v is not None}
    mapping = service.set_mapping(db, changes, actor=_actor(p))
    db.commit()
    return _mapping_out(mapping)
