"""The ledger pages of the staff UI, under ``/ledger``: the chart of accounts, the journal, an
entry with its postings (and its reversal), the manual entry form, the trial balance and the
period locks.

Every route names its permission (``core.ledger.read`` to see, ``core.ledger.post`` to post
and reverse, ``core.ledger.manage`` to lock and unlock periods), every form carries the CSRF
token, and every change goes through :mod:`erp_core.ledger.service`, the only code that writes
the ledger. Forms first check what they can show next to a field, in the user's language
(amounts, accounts, balance, locked period); the service then decides, and anything else it
refuses is shown above the form. Nothing is stored when a form is refused.

A journal entry links to its source document when a plugin (or the kernel) says where that
document's page is, through the ``erp_ledger_source_url`` hook.
"""

from __future__ import annotations

import datetime
import re
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Annotated, Any

from babel.numbers import format_currency
from fastapi import APIRouter, Depends, Form, HTTPException, Request
from fastapi.responses import Response
from sqlalchemy import func, select
from sqlalchemy.orm import Session, aliased, selectinload

from erp_core.auth.deps import DbSession, Hooks, require
from erp_core.auth.principal import Principal
from erp_core.i18n import N_, Message, translate
from erp_core.ledger import service
from erp_core.ledger.accounts import minor_unit
from erp_core.ledger.models import Account, JournalEntry, PeriodLock, Posting
from erp_core.ledger.types import DIMENSIONS, EntryDraft, LedgerError, PostingDraft
from erp_core.tenancy.models import Tenant
from erp_core.web.flash import redirect
from erp_core.web.listing import Column, Filter, ListView, mount_list
from erp_core.web.shell import tenant_prefs
from erp_core.web.templating import format_datetime, is_htmx, render

router = APIRouter(prefix="/ledger", include_in_schema=False)

READ = "core.ledger.read"
POST = "core.ledger.post"
MANAGE = "core.ledger.manage"
Reader = Annotated[Principal, Depends(require(READ))]
Poster = Annotated[Principal, Depends(require(POST))]
Manager = Annotated[Principal, Depends(require(MANAGE))]

ACCOUNT_TYPE_TITLES: dict[str, str] = {
    "asset": N_("Asset"),
    "liability": N_("Liability"),
    "equity": N_("Equity"),
    "income": N_("Income"),
    "expense": N_("Expense"),
}
DIMENSION_TITLES: dict[str, str] = {
    "channel": N_("Channel"),
    "store": N_("Store"),
    "sku": N_("SKU"),
    "order": N_("Order"),
    "warehouse": N_("Warehouse"),
}
#: Lines the entry form starts with, and the most it takes.
FORM_LINES = 2
MAX_FORM_LINES = 200
#: Months the period page lists (this one and the ones before), besides every locked one.
RECENT_PERIODS = 12
KEY_RE = re.compile(r"^manual:[0-9a-f]{32}$")
LINE_FIELDS = ("account", "debit", "credit", "memo", *DIMENSIONS)
LINE_FIELD_RE = re.compile(r"^lines-(\d{1,4})-(" + "|".join(LINE_FIELDS) + r")$")


# --- shared helpers --------------------------------------------------------------------------


def _actor(principal: Principal) -> str:
    """Who posted or locked, as the ledger records it (the API records the same)."""
    if principal.via == "token":
        return f"{principal.email} via {principal.label}"
    return principal.email


def money_format(locale: str) -> Callable[[Decimal | None, str], str]:
    """``money(amount, "CNY")``: an amount in its currency's format for the UI language."""

    def money(amount: Decimal | None, currency: str) -> str:
        if amount is None:
            return ""
        return format_currency(amount, currency, locale=locale)

    return money


def balance_format(locale: str) -> Callable[[Decimal | None, str], str]:
    """``balance(amount, "CNY")``: a balance as an amount and its side (debit or credit)."""
    money = money_format(locale)

    def balance(amount: Decimal | None, currency: str) -> str:
        if amount is None:
            return ""
        if amount == 0:
            return money(abs(amount), currency)
        side = translate(N_("Dr") if amount > 0 else N_("Cr"))
        return f"{money(abs(amount), currency)} {side}"

    return balance


def name_in(locale: str) -> Callable[[Any], str]:
    """An account's name (anything with ``name_zh`` and ``name_en``) in the UI language."""

    def name(account: Any) -> str:
        return str(account.name_zh if locale == "zh_CN" else account.name_en)

    return name


@dataclass(frozen=True, slots=True)
class Prefs:
    """What every ledger page needs to show money, names, dates and times."""

    locale: str
    zone: datetime.tzinfo
    currency: str

    @property
    def today(self) -> datetime.date:
        return datetime.datetime.now(self.zone).date()

    def context(self, principal: Principal) -> dict[str, Any]:
        return {
            "currency": self.currency,
            "money": money_format(self.locale),
            "balance": balance_format(self.locale),
            "name_of": name_in(self.locale),
            "type_titles": ACCOUNT_TYPE_TITLES,
            "dimension_titles": DIMENSION_TITLES,
            "can_post": principal.can(POST),
            "can_manage": principal.can(MANAGE),
        }


def _prefs(request: Request, db: Session, principal: Principal) -> Prefs:
    locale, zone = tenant_prefs(request, db)
    tenant = db.get(Tenant, principal.tenant_id)
    return Prefs(locale, zone, tenant.currency if tenant is not None else "CNY")


def _day(raw: str) -> datetime.date | None:
    try:
        return datetime.date.fromisoformat(raw.strip()) if raw.strip() else None
    except ValueError:
        return None


def _lock_problem(db: Session, day: datetime.date, zone: datetime.tzinfo) -> Message | None:
    """Why nothing can be posted on ``day``, if its period is locked."""
    period = service.period_of(day)
    lock = db.scalar(select(PeriodLock).where(PeriodLock.period == period))
    if lock is None:
        return None
    return N_(
        "period %(period)s is locked (by %(who)s on %(when)s)",
        period=period,
        who=lock.locked_by or "?",
        when=format_datetime(lock.locked_at, zone=zone),
    )


def source_url(hooks: Any, source_type: str | None, source_id: str | None) -> str | None:
    """The page of an entry's source document, from ``erp_ledger_source_url`` (a path on this
    site only), or None."""
    if not source_type or source_id is None:
        return None
    for url in hooks.erp_ledger_source_url(source_type=source_type, source_id=source_id):
        if isinstance(url, str) and url.startswith("/") and not url.startswith(("//", "/\\")):
            return url
    return None


# --- chart of accounts -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ChartRow:
    account: Account
    depth: int
    postable: bool
    balance: Decimal | None
    parent_code: str | None = None


def _accounts(db: Session) -> list[Account]:
    return list(db.scalars(select(Account).order_by(Account.code)))


def chart_rows(accounts: list[Account], balances: Mapping[int, Decimal] | None) -> list[ChartRow]:
    """The accounts in tree order (each followed by its sub-accounts), with their depth."""
    ids = {a.id for a in accounts}
    children: dict[int | None, list[Account]] = defaultdict(list)
    for a in accounts:
        children[a.parent_id if a.parent_id in ids else None].append(a)
    rows: list[ChartRow] = []
    stack: list[tuple[Account, int, str | None]] = [(a, 0, None) for a in reversed(children[None])]
    while stack:
        a, depth, parent = stack.pop()
        subs = children.get(a.id, [])
        balance = None if balances is None else balances.get(a.id, Decimal(0))
        rows.append(ChartRow(a, depth, not subs, balance, parent))
        stack.extend((sub, depth + 1, a.code) for sub in reversed(subs))
    return rows


def rolled_up_balances(db: Session, accounts: list[Account]) -> dict[int, Decimal]:
    """Each account's balance in the tenant currency, aggregates the sum of their subtree."""
    by_code = {a.code: a for a in accounts}
    parent = {a.id: a.parent_id for a in accounts}
    out: dict[int, Decimal] = defaultdict(Decimal)
    for row in service.balances(db):
        acc = by_code.get(row.account)
        node = acc.id if acc is not None else None
        while node is not None:
            out[node] += row.amount_base
            node = parent.get(node)
    return out


@router.get("/accounts")
def accounts_page(
    request: Request, db: DbSession, principal: Reader, balances: str = ""
) -> Response:
    prefs = _prefs(request, db, principal)
    accounts = _accounts(db)
    show = balances == "1"
    rows = chart_rows(accounts, rolled_up_balances(db, accounts) if show else None)
    ctx = {**prefs.context(principal), "rows": rows, "show_balances": show}
    return render(request, "ledger/accounts.html", ctx, block="chart")


# --- journal ---------------------------------------------------------------------------------

_reversal = aliased(JournalEntry)
_REVERSED_BY = (
    select(_reversal.id)
    .where(_reversal.reverses_id == JournalEntry.id)
    .correlate(JournalEntry)
    .scalar_subquery()
)
_DEBITS = (
    select(func.sum(Posting.amount_base))
    .where(Posting.entry_id == JournalEntry.id, Posting.amount_base > 0)
    .correlate(JournalEntry)
    .scalar_subquery()
)


def _with_posting(*conditions: Any) -> Any:
    """Entries with at least one posting that meets ``conditions``."""
    return JournalEntry.id.in_(select(Posting.entry_id).where(*conditions))


def _on_account(code: str) -> Any:
    """Entries with a posting on account ``code`` or one of its sub-accounts."""
    codes = select(Account.id).where(Account.code.startswith(code, autoescape=True))
    return _with_posting(Posting.account_id.in_(codes))


def _on_dimension(dim: str) -> Callable[[str], Any]:
    column = getattr(Posting, service.DIM_COLUMNS[dim])
    return lambda value: _with_posting(column == value)


def _source(row: Any) -> str:
    return f"{row.source_type} {row.source_id or ''}".strip() if row.source_type else ""


def _reversal_state(row: Any) -> Message | None:
    if row.reverses_id is not None:
        return N_("reverses entry %(id)s", id=row.reverses_id)
    if row.reversed_by is not None:
        return N_("reversed by entry %(id)s", id=row.reversed_by)
    return None


def _debit_total(row: Any) -> Decimal:
    total = row.debits if row.debits is not None else Decimal(0)
    return total.quantize(Decimal(1).scaleb(-minor_unit(row.currency)))


def _entry_link(row: Any) -> str:
    return f"/ledger/entries/{row.id}"


JOURNAL = ListView(
    name="journal",
    title=N_("Journal"),
    query=select(
        JournalEntry.id.label("id"),
        JournalEntry.date.label("date"),
        JournalEntry.narration.label("narration"),
        JournalEntry.source_type.label("source_type"),
        JournalEntry.source_id.label("source_id"),
        JournalEntry.reverses_id.label("reverses_id"),
        _REVERSED_BY.label("reversed_by"),
        _DEBITS.label("debits"),
        JournalEntry.posted_by.label("posted_by"),
        JournalEntry.posted_at.label("posted_at"),
        Tenant.currency.label("currency"),
    ).join(Tenant, Tenant.id == JournalEntry.tenant_id),
    id_expr=JournalEntry.id,
    columns=(
        # entries are numbered in the order they are posted: the number is the sort (indexed)
        Column(
            key="id", title=N_("Entry no."), expr=JournalEntry.id, sortable=True, link=_entry_link
        ),
        Column(key="date", title=N_("Entry date"), expr=JournalEntry.date),
        Column(
            key="narration",
            title=N_("Description"),
            expr=JournalEntry.narration,
            link=_entry_link,
        ),
        Column(key="source", title=N_("Source document"), value=_source),
        Column(key="amount", title=N_("Debit total"), value=_debit_total),
        Column(key="reversal", title=N_("Reversal"), value=_reversal_state),
        Column(key="posted_by", title=N_("Posted by"), expr=JournalEntry.posted_by),
        Column(key="posted_at", title=N_("Posted at"), expr=JournalEntry.posted_at, visible=False),
    ),
    search=(JournalEntry.narration, JournalEntry.source_id, JournalEntry.posted_by),
    filters=(
        Filter(key="date_from", title=N_("From"), expr=JournalEntry.date, kind="date_from"),
        Filter(key="date_to", title=N_("To"), expr=JournalEntry.date, kind="date_to"),
        Filter(key="account", title=N_("Account"), where=_on_account),
        Filter(
            key="source_type",
            title=N_("Source type"),
            expr=JournalEntry.source_type,
            kind="text",
        ),
        Filter(key="source_id", title=N_("Source ID"), expr=JournalEntry.source_id, kind="text"),
        *(
            Filter(key=d, title=DIMENSION_TITLES[d], kind="text", where=_on_dimension(d))
            for d in DIMENSIONS
        ),
    ),
    sort="-id",
)


def _journal_extra(request: Request, db: Session) -> dict[str, Any]:
    principal: Principal = request.state.principal
    name = name_in(tenant_prefs(request, db)[0])
    accounts = [(a.code, f"{a.code} {name(a)}") for a in _accounts(db)]
    return {"filter_choices": {"account": accounts}, "can_post": principal.can(POST)}


JOURNAL = mount_list(
    router,
    "/entries",
    JOURNAL,
    read=READ,
    template="ledger/entries.html",
    context=_journal_extra,
)


# --- the manual entry form -------------------------------------------------------------------


@dataclass
class LineInput:
    """One line of the entry form, as typed."""

    account: str = ""
    debit: str = ""
    credit: str = ""
    memo: str = ""
    dims: dict[str, str] = field(default_factory=dict)

    def blank(self) -> bool:
        values = (self.account, self.debit, self.credit, self.memo, *self.dims.values())
        return not any(values)


@dataclass
class EntryInput:
    """The entry form, as typed (kept as it is when the form comes back with errors)."""

    date: str
    narration: str
    key: str
    lines: list[LineInput]


def _new_key() -> str:
    """The idempotency key of one form: posting the same form twice posts one entry."""
    return f"manual:{uuid.uuid4().hex}"


def entry_input(form: Any) -> EntryInput:
    """The form as typed (lines from the ``lines-<n>-<field>`` fields, in the order of n)."""
    lines: dict[int, LineInput] = {}
    for name, value in form.multi_items():
        m = LINE_FIELD_RE.match(name)
        if m is None or not isinstance(value, str) or int(m.group(1)) >= MAX_FORM_LINES:
            continue
        line = lines.setdefault(int(m.group(1)), LineInput())
        what, text = m.group(2), value.strip()[:1000]
        if what in DIMENSIONS:
            line.dims[what] = text
        else:
            setattr(line, what, text)
    ordered = [lines[i] for i in sorted(lines)]
    key = str(form.get("key") or "")
    return EntryInput(
        date=str(form.get("date") or "").strip()[:20],
        narration=str(form.get("narration") or "").strip()[:4000],
        key=key if KEY_RE.match(key) else _new_key(),
        lines=ordered or [LineInput() for _ in range(FORM_LINES)],
    )


def _amount(raw: str, places: int) -> tuple[Decimal, Message | None]:
    """A debit or credit as typed: a positive number with at most ``places`` decimals
    (0 when empty)."""
    if not raw:
        return Decimal(0), None
    try:
        d = Decimal(raw.replace(",", "").replace(" ", ""))
    except InvalidOperation:
        return Decimal(0), N_("enter an amount like 12.50")
    if not d.is_finite():
        return Decimal(0), N_("enter an amount like 12.50")
    if d < 0:
        return Decimal(0), N_("enter a positive amount (a credit goes in the credit column)")
    if d >= service.MAX_AMOUNT:
        return Decimal(0), N_("the amount is too large")
    if d != d.quantize(Decimal(1).scaleb(-places)):
        return Decimal(0), N_("use at most %(places)s decimals", places=places)
    return d, None


def _account_problem(code: str, chart: Mapping[str, ChartRow]) -> Message | None:
    if not code:
        return N_("choose an account")
    row = chart.get(code)
    if row is None:
        return N_("unknown account %(code)s", code=code)
    if not row.postable:
        return N_("account %(code)s has sub-accounts; choose one of them", code=code)
    if not row.account.is_active:
        return N_("account %(code)s is inactive", code=code)
    return None


def _check_line(
    n: int, line: LineInput, chart: Mapping[str, ChartRow], places: int, errors: dict[str, Any]
) -> PostingDraft | None:
    """Check line ``n``: its errors go to ``errors`` (``lines-<n>-<field>``); returns its
    posting when it has none."""
    found: dict[str, Any] = {}
    problem = _account_problem(line.account, chart)
    if problem:
        found["account"] = problem
    debit, problem = _amount(line.debit, places)
    if problem:
        found["debit"] = problem
    credit, problem = _amount(line.credit, places)
    if problem:
        found["credit"] = problem
    if not {"debit", "credit"} & set(found):
        if debit and credit:
            found["credit"] = N_("enter a debit or a credit, not both")
        elif not debit and not credit:
            found["debit"] = N_("enter a debit or a credit")
    if len(line.memo) > service.LIMITS["memo"]:
        found["memo"] = N_("at most %(n)s characters", n=service.LIMITS["memo"])
    for name, value in line.dims.items():
        if len(value) > service.LIMITS["dimension"]:
            found[name] = N_("at most %(n)s characters", n=service.LIMITS["dimension"])
    errors.update({f"lines-{n}-{k}": v for k, v in found.items()})
    if found:
        return None
    dim = line.dims.get
    return PostingDraft(
        account=line.account,
        amount=debit if debit else -credit,
        memo=line.memo,
        channel=dim("channel") or None,
        store=dim("store") or None,
        sku=dim("sku") or None,
        order=dim("order") or None,
        warehouse=dim("warehouse") or None,
    )


def _totals(lines: Iterable[LineInput], places: int) -> tuple[Decimal, Decimal]:
    """The debits and credits typed so far (what cannot be read counts as 0)."""
    debit = sum((_amount(x.debit, places)[0] for x in lines), Decimal(0))
    credit = sum((_amount(x.credit, places)[0] for x in lines), Decimal(0))
    return debit, credit


def check_entry(
    db: Session, data: EntryInput, chart: Mapping[str, ChartRow], prefs: Prefs
) -> tuple[EntryDraft | None, dict[str, Any]]:
    """The draft to post, or the errors to show next to their fields (``""``: the form,
    ``lines``: the lines as a whole, ``balance``: the totals)."""
    errors: dict[str, Any] = {}
    day = _day(data.date)
    if day is None or not service.FIRST_DATE <= day <= service.LAST_DATE:
        errors["date"] = N_("enter a date like 2026-10-31")
    if not data.narration:
        errors["narration"] = N_("describe the entry")
    elif len(data.narration) > service.LIMITS["narration"]:
        errors["narration"] = N_("at most %(n)s characters", n=service.LIMITS["narration"])
    places = minor_unit(prefs.currency)
    postings = [
        _check_line(n, line, chart, places, errors)
        for n, line in enumerate(data.lines)
        if not line.blank()
    ]
    if len(postings) < 2:
        errors["lines"] = N_("an entry needs at least two lines")
    elif all(p is not None for p in postings):
        debit, credit = _totals(data.lines, places)
        if debit != credit:
            money = money_format(prefs.locale)
            errors["balance"] = N_(
                "the entry does not balance: debits %(debit)s, credits %(credit)s, "
                "difference %(difference)s",
                debit=money(debit, prefs.currency),
                credit=money(credit, prefs.currency),
                difference=money(debit - credit, prefs.currency),
            )
    if day is not None and "date" not in errors:
        problem = _lock_problem(db, day, prefs.zone)
        if problem:
            errors["date"] = problem
    if errors or day is None:
        return None, errors
    draft = EntryDraft(
        date=day,
        narration=data.narration,
        idempotency_key=data.key,
        postings=tuple(p for p in postings if p is not None),
    )
    return draft, errors


def _form_ctx(
    db: Session,
    principal: Principal,
    prefs: Prefs,
    data: EntryInput,
    errors: Mapping[str, Any],
    *,
    focus: str | None = None,
) -> dict[str, Any]:
    """The form's context; ``focus``: the field to focus (default: the first with an error)."""
    chart = chart_rows(_accounts(db), None)
    name = name_in(prefs.locale)
    choices = [
        (r.account.code, f"{r.account.code} {name(r.account)}")
        for r in chart
        if r.postable and r.account.is_active
    ]
    known = {code for code, _ in choices}
    for line in data.lines:  # keep what was sent, so that its error makes sense
        if line.account and line.account not in known:
            choices.append((line.account, line.account))
            known.add(line.account)
    debit, credit = _totals(data.lines, minor_unit(prefs.currency))
    open_dims = {  # lines whose dimensions show without a click
        n
        for n, line in enumerate(data.lines)
        if any(line.dims.values()) or any(f"lines-{n}-{d}" in errors for d in DIMENSIONS)
    }
    focus = focus or next((k for k in _field_order(data) if k in errors), None)

    def attrs(key: str, **extra: str) -> dict[str, str]:
        """A field's extra attributes; the first field with an error gets the focus."""
        return {**extra, "autofocus": "autofocus"} if key == focus else extra

    return {
        **prefs.context(principal),
        "form": data,
        "errors": errors,
        "focus": focus,
        "attrs": attrs,
        "account_choices": choices,
        "open_dims": open_dims,
        "total_debit": debit,
        "total_credit": credit,
    }


def _field_order(data: EntryInput) -> list[str]:
    """Form fields in the order they appear (the first one with an error gets the focus)."""
    order = ["date", "narration"]
    for n in range(len(data.lines)):
        order += [f"lines-{n}-{f}" for f in LINE_FIELDS]
    return order


def _chart_by_code(db: Session) -> dict[str, ChartRow]:
    return {r.account.code: r for r in chart_rows(_accounts(db), None)}


@router.get("/entries/new")
def entry_form(request: Request, db: DbSession, principal: Poster) -> Response:
    prefs = _prefs(request, db, principal)
    data = EntryInput(
        date=prefs.today.isoformat(),
        narration="",
        key=_new_key(),
        lines=[LineInput() for _ in range(FORM_LINES)],
    )
    ctx = _form_ctx(db, principal, prefs, data, {})
    return render(request, "ledger/entry_form.html", ctx, block="entry_form")


@router.post("/entries/new")
async def entry_post(request: Request, db: DbSession, principal: Poster, hooks: Hooks) -> Response:
    from starlette.concurrency import run_in_threadpool

    form = await request.form()
    data = entry_input(form)
    add_line = form.get("action") == "add_line"
    return await run_in_threadpool(_entry_post, request, db, principal, hooks, data, add_line)


def _entry_post(
    request: Request,
    db: Session,
    principal: Principal,
    hooks: Any,
    data: EntryInput,
    add_line: bool,
) -> Response:
    prefs = _prefs(request, db, principal)
    if add_line:  # show one more line; nothing is checked or posted
        if len(data.lines) < MAX_FORM_LINES:
            data.lines.append(LineInput())
        new_line = f"lines-{len(data.lines) - 1}-account"
        ctx = _form_ctx(db, principal, prefs, data, {}, focus=new_line)
        return render(request, "ledger/entry_form.html", ctx, block="entry_form")
    draft, errors = check_entry(db, data, _chart_by_code(db), prefs)
    if draft is not None:
        posted_before = db.scalar(
            select(JournalEntry.id).where(JournalEntry.idempotency_key == draft.idempotency_key)
        )
        try:
            entry = service.post_entry(db, draft, hooks=hooks, actor=_actor(principal))
            entry_id = entry.id
            db.commit()
        except LedgerError as exc:
            db.rollback()
            errors = {"": exc.args[0] if exc.args else str(exc)}
            if posted_before is not None:  # the form was posted already, then changed
                errors[""] = N_(
                    "this form was already posted as entry %(id)s; start a new entry for "
                    "another posting",
                    id=posted_before,
                )
                data.key = _new_key()
        else:
            message = N_("Entry %(id)s posted.", id=entry_id)
            return redirect(request, f"/ledger/entries/{entry_id}", message)
    ctx = _form_ctx(db, principal, prefs, data, errors)
    return render(request, "ledger/entry_form.html", ctx, block="entry_form", status_code=422)


# --- one entry -------------------------------------------------------------------------------


def _entry(db: Session, principal: Principal, entry_id: int) -> JournalEntry:
    q = (
        select(JournalEntry)
        .where(JournalEntry.id == entry_id)
        .options(selectinload(JournalEntry.postings))
    )
    entry = db.scalar(q)
    if entry is None or entry.tenant_id != principal.tenant_id:
        raise HTTPException(404, "Not Found")
    return entry


def _entry_ctx(
    db: Session,
    principal: Principal,
    prefs: Prefs,
    hooks: Any,
    entry: JournalEntry,
    *,
    form: Mapping[str, str] | None = None,
    errors: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    reversed_by = service.reversal_of(db, entry.id)
    return {
        **prefs.context(principal),
        "entry": entry,
        "reversed_by": reversed_by,
        "source_url": source_url(hooks, entry.source_type, entry.source_id),
        "can_reverse": principal.can(POST) and entry.reverses_id is None and reversed_by is None,
        "reverse_form": form or {"reason": "", "date": ""},
        "errors": errors or {},
        "dialog_open": bool(errors),
        "rate": service.fmt_rate,
    }


@router.get("/entries/{entry_id:int}")
def entry_page(
    entry_id: int, request: Request, db: DbSession, principal: Reader, hooks: Hooks
) -> Response:
    entry = _entry(db, principal, entry_id)
    ctx = _entry_ctx(db, principal, _prefs(request, db, principal), hooks, entry)
    return render(request, "ledger/entry.html", ctx, block="entry")


def _reverse_problems(
    db: Session, entry: JournalEntry, reason: str, raw_date: str, zone: datetime.tzinfo
) -> tuple[datetime.date | None, dict[str, Any]]:
    errors: dict[str, Any] = {}
    if not reason.strip():
        errors["reason"] = N_("say why the entry is reversed")
    day = _day(raw_date) if raw_date.strip() else entry.date
    if day is None:
        errors["date"] = N_("enter a date like 2026-10-31")
    elif day < entry.date:
        errors["date"] = N_(
            "a reversal cannot be dated before the entry it reverses (%(date)s)",
            date=entry.date.isoformat(),
        )
    else:
        problem = _lock_problem(db, day, zone)
        if problem:
            errors["date"] = problem
    return day, errors


@router.post("/entries/{entry_id:int}/reverse")
def entry_reverse(
    entry_id: int,
    request: Request,
    db: DbSession,
    principal: Poster,
    hooks: Hooks,
    reason: Annotated[str, Form(max_length=500)] = "",
    date: Annotated[str, Form(max_length=20)] = "",
) -> Response:
    entry = _entry(db, principal, entry_id)
    prefs = _prefs(request, db, principal)
    day, errors = _reverse_problems(db, entry, reason, date, prefs.zone)
    if not errors:
        try:
            rev = service.reverse_entry(
                db, entry.id, date=day, reason=reason, hooks=hooks, actor=_actor(principal)
            )
            rev_id = rev.id
            db.commit()
        except LedgerError as exc:
            db.rollback()
            errors = {"": exc.args[0] if exc.args else str(exc)}
        else:
            message = N_("Entry %(id)s reversed by entry %(rev)s.", id=entry_id, rev=rev_id)
            return redirect(request, f"/ledger/entries/{rev_id}", message)
    entry = _entry(db, principal, entry_id)
    form = {"reason": reason, "date": date}
    ctx = _entry_ctx(db, principal, prefs, hooks, entry, form=form, errors=errors)
    return render(request, "ledger/entry.html", ctx, block="reverse_form", status_code=422)


# --- trial balance ---------------------------------------------------------------------------


def _debit_side(balance: Decimal) -> Decimal:
    return max(balance, Decimal(0))


def _credit_side(balance: Decimal) -> Decimal:
    return max(-balance, Decimal(0))


@dataclass
class TrialRow:
    """One account in one currency over the chosen dates (credits as positive amounts)."""

    account: str
    name_zh: str
    name_en: str
    currency: str
    opening: Decimal = Decimal(0)
    debit: Decimal = Decimal(0)
    credit: Decimal = Decimal(0)
    closing: Decimal = Decimal(0)
    closing_base: Decimal = Decimal(0)

    @property
    def opening_debit(self) -> Decimal:
        return _debit_side(self.opening)

    @property
    def opening_credit(self) -> Decimal:
        return _credit_side(self.opening)

    @property
    def closing_debit(self) -> Decimal:
        return _debit_side(self.closing)

    @property
    def closing_credit(self) -> Decimal:
        return _credit_side(self.closing)


@dataclass
class TrialTotal:
    currency: str
    opening_debit: Decimal = Decimal(0)
    opening_credit: Decimal = Decimal(0)
    debit: Decimal = Decimal(0)
    credit: Decimal = Decimal(0)
    closing_debit: Decimal = Decimal(0)
    closing_credit: Decimal = Decimal(0)
    closing_base: Decimal = Decimal(0)

    @property
    def balanced(self) -> bool:
        return (
            self.opening_debit == self.opening_credit
            and self.debit == self.credit
            and self.closing_debit == self.closing_credit
        )

    def add(self, row: TrialRow) -> None:
        self.opening_debit += row.opening_debit
        self.opening_credit += row.opening_credit
        self.debit += row.debit
        self.credit += row.credit
        self.closing_debit += row.closing_debit
        self.closing_credit += row.closing_credit
        self.closing_base += row.closing_base


def trial_rows(
    db: Session, since: datetime.date | None, until: datetime.date | None
) -> list[TrialRow]:
    """Per account and currency: the balance before ``since``, the debits and credits from
    ``since`` to ``until``, and the balance at ``until`` (two trial balances of the service:
    sums up to a day, so the difference is what happened in between)."""
    rows: dict[tuple[str, str], TrialRow] = {}
    for r in service.trial_balance(db, until=until):
        rows[(r.account, r.currency)] = TrialRow(
            r.account,
            r.name_zh,
            r.name_en,
            r.currency,
            debit=r.debit,
            credit=-r.credit,
            closing=r.balance,
            closing_base=r.balance_base,
        )
    if since is not None:
        for r in service.trial_balance(db, until=since - datetime.timedelta(days=1)):
            row = rows.setdefault(  # an earlier day's sums are part of the later day's
                (r.account, r.currency), TrialRow(r.account, r.name_zh, r.name_en, r.currency)
            )
            row.opening = r.balance
            row.debit -= r.debit
            row.credit += r.credit
    return list(rows.values())


def trial_totals(rows: Iterable[TrialRow]) -> list[TrialTotal]:
    totals: dict[str, TrialTotal] = {}
    for row in rows:
        totals.setdefault(row.currency, TrialTotal(row.currency)).add(row)
    return [totals[c] for c in sorted(totals)]


def _trial_range(
    period: str, date_from: str, date_to: str
) -> tuple[datetime.date | None, datetime.date | None, dict[str, Any]]:
    """The dates of the report: a period (month) or a range, each end optional."""
    errors: dict[str, Any] = {}
    if period:
        m = service.PERIOD_RE.match(period)
        if m is None:
            return None, None, {"period": N_("enter a month like 2026-10")}
        first = datetime.date(int(m.group(1)), int(m.group(2)), 1)
        last = (first + datetime.timedelta(days=31)).replace(day=1) - datetime.timedelta(days=1)
        return first, last, errors
    since, until = _day(date_from), _day(date_to)
    if date_from.strip() and since is None:
        errors["date_from"] = N_("enter a date like 2026-10-31")
    if date_to.strip() and until is None:
        errors["date_to"] = N_("enter a date like 2026-10-31")
    if since and until and since > until:
        errors["date_to"] = N_("the end is before the start")
    return since, until, errors


@router.get("/trial-balance")
def trial_balance_page(
    request: Request,
    db: DbSession,
    principal: Reader,
    period: str = "",
    date_from: str = "",
    date_to: str = "",
) -> Response:
    prefs = _prefs(request, db, principal)
    period, date_from, date_to = period.strip()[:7], date_from.strip()[:10], date_to.strip()[:10]
    since, until, errors = _trial_range(period, date_from, date_to)
    rows = [] if errors else trial_rows(db, since, until)
    ctx = {
        **prefs.context(principal),
        "form": {"period": period, "date_from": date_from, "date_to": date_to},
        "errors": errors,
        "since": since,
        "until": until,
        "rows": rows,
        "totals": trial_totals(rows),
        "foreign": any(r.currency != prefs.currency for r in rows),
    }
    return render(request, "ledger/trial_balance.html", ctx, block="report")


# --- periods ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PeriodRow:
    period: str
    lock: PeriodLock | None


def _recent(today: datetime.date, n: int) -> list[str]:
    year, month = today.year, today.month
    out = []
    for _ in range(n):
        out.append(f"{year:04d}-{month:02d}")
        year, month = (year, month - 1) if month > 1 else (year - 1, 12)
    return out


def period_rows(db: Session, today: datetime.date) -> list[PeriodRow]:
    """This month and the ones before it, and every locked period, newest first."""
    locks = {lock.period: lock for lock in service.locked_periods(db)}
    periods = set(_recent(today, RECENT_PERIODS)) | set(locks)
    return [PeriodRow(p, locks.get(p)) for p in sorted(periods, reverse=True)]


def _periods_ctx(
    db: Session,
    principal: Principal,
    prefs: Prefs,
    *,
    problems: Mapping[str, Any] | None = None,
    errors: Mapping[str, Any] | None = None,
    form: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    return {
        **prefs.context(principal),
        "periods": period_rows(db, prefs.today),
        "problems": problems or {},
        "errors": errors or {},
        "form": form or {"period": ""},
    }


@router.get("/periods")
def periods_page(request: Request, db: DbSession, principal: Reader) -> Response:
    ctx = _periods_ctx(db, principal, _prefs(request, db, principal))
    return render(request, "ledger/periods.html", ctx, block="periods")


def _period_change(
    request: Request, db: Session, principal: Principal, period: str, *, lock: bool, row: str
) -> Response:
    """Lock or unlock ``period``; a refusal is shown next to the period's row (``row``: the
    period the button belongs to) or next to the form's field (``row`` empty)."""
    prefs = _prefs(request, db, principal)
    period = period.strip()
    problem: Any = None
    if not service.PERIOD_RE.match(period):
        problem = N_("enter a month like 2026-10")
    elif not lock and not service.is_locked(db, period):
        problem = N_("period %(period)s is not locked", period=period)
    else:
        try:
            if lock:
                service.lock_period(db, period, actor=_actor(principal))
            else:
                service.unlock_period(db, period, actor=_actor(principal))
            db.commit()
        except LedgerError as exc:
            db.rollback()
            problem = exc.args[0] if exc.args else str(exc)
    if problem is not None:
        if row:
            ctx = _periods_ctx(db, principal, prefs, problems={row: problem})
        else:
            ctx = _periods_ctx(
                db, principal, prefs, errors={"period": problem}, form={"period": period}
            )
        return render(request, "ledger/periods.html", ctx, block="periods", status_code=422)
    if lock:
        message = N_("Period %(period)s locked.", period=period)
    else:
        message = N_("Period %(period)s unlocked.", period=period)
    if is_htmx(request):
        ctx = _periods_ctx(db, principal, prefs)
        return render(
            request, "ledger/periods.html", ctx, block="periods", messages=[("success", message)]
        )
    return redirect(request, "/ledger/periods", message)


@router.post("/periods/lock")
def period_lock(
    request: Request,
    db: DbSession,
    principal: Manager,
    period: Annotated[str, Form(max_length=20)] = "",
    row: Annotated[str, Form(max_length=7)] = "",
) -> Response:
    return _period_change(request, db, principal, period, lock=True, row=row)


@router.post("/periods/unlock")
def period_unlock(
    request: Request,
    db: DbSession,
    principal: Manager,
    period: Annotated[str, Form(max_length=20)] = "",
    row: Annotated[str, Form(max_length=7)] = "",
) -> Response:
    return _period_change(request, db, principal, period, lock=False, row=row)
