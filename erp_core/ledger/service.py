"""The ledger service: the only code that writes ledger tables.

Every function takes a session bound to one tenant (see :mod:`erp_core.db.session`), flushes
and never commits: the caller commits with the business change the entries record. Bad input
raises :class:`LedgerError` before anything is written.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import operator
import re
from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation, localcontext
from typing import TYPE_CHECKING, Any, NamedTuple, cast
from zoneinfo import ZoneInfo

from sqlalchemy import Table, bindparam, case, exists, func, insert, select, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, aliased, make_transient_to_detached

from erp_core.audit.service import record
from erp_core.db.base import utcnow
from erp_core.db.bulk import FEW_ROWS, RowInsert
from erp_core.db.cache import cached, kept_copy, kept_row
from erp_core.db.direct import Direct, flushed_connection
from erp_core.db.session import TenantValue, session_tenant
from erp_core.ledger.accounts import (
    DEFAULT_CHART,
    PURPOSE_NAMES,
    PURPOSES,
    VALUATION_ACCOUNTS,
    minor_unit,
)
from erp_core.ledger.models import Account, AccountMapping, JournalEntry, PeriodLock, Posting
from erp_core.ledger.types import (
    ACCOUNT_TYPES,
    DIMENSIONS,
    BalanceRow,
    EntryDraft,
    LedgerError,
    PostingDraft,
    TrialBalanceRow,
)
from erp_core.tenancy.context import NoTenantError
from erp_core.tenancy.models import Tenant

if TYPE_CHECKING:
    from erp_core.inventory.types import StockValuation

__all__ = [
    "LedgerError",
    "balances",
    "create_account",
    "ensure_chart",
    "get_mapping",
    "is_locked",
    "lock_period",
    "locked_periods",
    "post_entry",
    "post_valuation",
    "post_valuations",
    "reverse_entry",
    "set_mapping",
    "trial_balance",
    "unlock_period",
    "update_account",
]

#: Largest absolute amount of one posting (transaction and tenant currency): sums of many
#: postings stay far inside the 64-bit columns.
MAX_AMOUNT = Decimal(10) ** 12
MAX_RATE = Decimal(10) ** 8
RATE_PLACES = 10
MAX_POSTINGS = 1000
FIRST_DATE = datetime.date(1900, 1, 1)
LAST_DATE = datetime.date(2999, 12, 31)
PERIOD_RE = re.compile(r"^(\d{4})-(0[1-9]|1[0-2])$")
CODE_RE = re.compile(r"^[0-9]{4,16}$")
CURRENCY_RE = re.compile(r"^[A-Z]{3}$")
#: Posting dimension name -> attribute of :class:`Posting`.
DIM_COLUMNS = {d: ("order_ref" if d == "order" else d) for d in DIMENSIONS}
LIMITS = {"memo": 500, "dimension": 100, "narration": 2000, "key": 200, "stype": 63, "sid": 200}


# --- helpers ------------------------------------------------------------------------------


def tenant_of(session: Session) -> Tenant:
    """The session's tenant, to read (its id, currency, time zone, name): a kept copy where
    there is one (:func:`~erp_core.db.cache.kept_copy`), never to be changed."""
    tid = session_tenant(session)
    if tid is None:
        raise NoTenantError("the ledger needs a session bound to a tenant")
    tenant = kept_copy(session, Tenant, tid) or kept_row(session, Tenant, tid)
    if tenant is None:
        raise LedgerError(f"no tenant {tid}")
    return tenant


def period_of(day: datetime.date) -> str:
    return f"{day.year:04d}-{day.month:02d}"


def check_period(period: str) -> str:
    if not isinstance(period, str) or not PERIOD_RE.match(period):
        raise LedgerError(f"period {period!r} must look like 2026-10 (year-month)")
    return period


#: ``Decimal("1e-N")`` by N, for the quantizing done per posting
_QUANTUM = {n: Decimal(1).scaleb(-n) for n in range(RATE_PLACES + 1)}


def _quantum(places: int) -> Decimal:
    q = _QUANTUM.get(places)
    return q if q is not None else Decimal(1).scaleb(-places)


def fmt(amount: Decimal, places: int) -> str:
    """``amount`` as plain text with exactly ``places`` decimals (never scientific)."""
    return f"{amount.quantize(_quantum(places)):f}"


def fmt_rate(rate: Decimal) -> str:
    text_ = f"{rate.quantize(_QUANTUM[RATE_PLACES]):f}"
    return text_.rstrip("0").rstrip(".") if "." in text_ else text_


def _places(d: Decimal) -> int:
    exp = d.as_tuple().exponent
    return max(0, -exp) if isinstance(exp, int) else 0


def _fits(d: Decimal, places: int) -> bool:
    """Whether ``d`` has at most ``places`` decimals (trailing zeros do not count)."""
    exp = d.as_tuple().exponent
    if not isinstance(exp, int) or -exp <= places:
        return True
    return d == d.quantize(_quantum(places))


def _as_decimal(value: object, what: str) -> Decimal:
    if isinstance(value, bool | float):
        kind = type(value).__name__
        raise LedgerError(f"{what} must be a Decimal (or a string), never {kind}")
    if isinstance(value, Decimal):
        d = value
    elif isinstance(value, int | str):
        try:
            d = Decimal(value)
        except InvalidOperation:
            raise LedgerError(f"{what} {value!r} is not a number") from None
    else:
        raise LedgerError(f"{what} must be a Decimal, not {type(value).__name__}")
    if not d.is_finite():
        raise LedgerError(f"{what} must be a finite number")
    return d


def _advisory_key(tenant_id: int, period: str) -> int:
    digest = hashlib.blake2b(f"ledger-period:{tenant_id}:{period}".encode(), digest_size=8)
    return int.from_bytes(digest.digest(), "big", signed=True)


def _guard_period(session: Session, tenant_id: int, period: str, *, exclusive: bool) -> None:
    """On PostgreSQL, order posting against locking: posts hold a shared lock on the period
    until they commit, locking takes it exclusively (SQLite serializes writers anyway)."""
    if session.get_bind().dialect.name != "postgresql":
        return
    lock = _PERIOD_EXCLUSIVE if exclusive else _PERIOD_SHARED
    lock.rows(session.connection(), {"k": _advisory_key(tenant_id, period)})


_PERIOD_EXCLUSIVE = Direct(text("SELECT pg_advisory_xact_lock(:k)"))
_PERIOD_SHARED = Direct(text("SELECT pg_advisory_xact_lock_shared(:k)"))


def _lock_problem(lock: Any) -> str:
    """The refusal a lock gives (a :class:`PeriodLock` or a row of its period, locked_by and
    locked_at)."""
    when = lock.locked_at.strftime("%Y-%m-%d %H:%M UTC")
    who = lock.locked_by or "unknown"
    return f"period {lock.period} is locked (by {who} on {when})"


# --- chart of accounts --------------------------------------------------------------------


def _parent_for(code: str, by_code: Mapping[str, Account]) -> Account | None:
    for n in range(len(code) - 1, 3, -1):
        parent = by_code.get(code[:n])
        if parent is not None:
            return parent
    return None


def ensure_chart(session: Session, tenant: Tenant | None = None) -> int:
    """Give the tenant the default chart and account mapping, adding only what is missing.

    Idempotent; returns the number of accounts added.
    """
    if tenant is not None and session_tenant(session) != tenant.id:
        raise LedgerError("ensure_chart: the session is not bound to this tenant")
    tenant_of(session)
    by_code = {a.code: a for a in session.scalars(select(Account))}
    added = 0
    for item in DEFAULT_CHART:
        if item.code in by_code:
            continue
        parent = _parent_for(item.code, by_code)
        acc = Account(
            code=item.code,
            name_zh=item.name_zh,
            name_en=item.name_en,
            type=item.type,
            parent_id=parent.id if parent is not None else None,
            is_active=True,
        )
        session.add(acc)
        session.flush()
        by_code[item.code] = acc
        added += 1
    mapped = set(session.scalars(select(AccountMapping.purpose)))
    for p in PURPOSES:
        if p.name not in mapped and p.default in by_code:
            session.add(AccountMapping(purpose=p.name, account_id=by_code[p.default].id))
    session.flush()
    _forget(session)
    return added


def _has_children(session: Session, account_id: int) -> bool:
    q = select(Account.id).where(Account.parent_id == account_id).limit(1)
    return session.scalar(q) is not None


def _has_postings(session: Session, account_id: int) -> bool:
    q = select(Posting.id).where(Posting.account_id == account_id).limit(1)
    return session.scalar(q) is not None


def _purposes_of(session: Session, account_id: int) -> list[str]:
    q = select(AccountMapping.purpose).where(AccountMapping.account_id == account_id)
    return sorted(session.scalars(q))


def _check_names(name_zh: str | None, name_en: str | None) -> None:
    for label, value in (("name_zh", name_zh), ("name_en", name_en)):
        if value is None:
            continue
        if not isinstance(value, str) or not value.strip():
            raise LedgerError(f"{label} must not be empty")
        if len(value) > 200:
            raise LedgerError(f"{label} is longer than 200 characters")


def create_account(
    session: Session,
    *,
    code: str,
    name_zh: str,
    name_en: str,
    type: str | None = None,
    parent: str | None = None,
    actor: str = "",
) -> Account:
    """Add an account. A sub-account's code starts with its parent's code (``220203`` under
    ``2202``); without ``parent`` the longest existing prefix is the parent. A sub-account has
    its parent's type; the parent must not have postings (it becomes an aggregate), and the
    purposes mapped to the parent move to its first sub-account."""
    tenant = tenant_of(session)
    if not isinstance(code, str) or not CODE_RE.match(code):
        raise LedgerError(f"account code {code!r} must be 4 to 16 digits")
    _check_names(name_zh, name_en)
    by_code = {a.code: a for a in session.scalars(select(Account))}
    if code in by_code:
        raise LedgerError(f"account {code} already exists")
    if parent is not None:
        parent_acc = by_code.get(parent)
        if parent_acc is None:
            raise LedgerError(f"unknown parent account {parent!r}")
        if not code.startswith(parent) or len(code) <= len(parent):
            raise LedgerError(f"a sub-account of {parent} has a code that starts with {parent}")
    else:
        parent_acc = _parent_for(code, by_code)
    if parent_acc is not None:
        if type is not None and type != parent_acc.type:
            raise LedgerError(
                f"a sub-account of {parent_acc.code} is of its type {parent_acc.type}, not {type}"
            )
        type = parent_acc.type
        if _has_postings(session, parent_acc.id):
            raise LedgerError(
                f"account {parent_acc.code} already has postings; it cannot get sub-accounts "
                "(its balance would no longer be the sum of theirs)"
            )
    if type not in ACCOUNT_TYPES:
        raise LedgerError(f"account type must be one of {', '.join(ACCOUNT_TYPES)}")
    acc = Account(
        code=code,
        name_zh=name_zh.strip(),
        name_en=name_en.strip(),
        type=type,
        parent_id=parent_acc.id if parent_acc is not None else None,
        is_active=True,
    )
    session.add(acc)
    session.flush()
    _forget(session)
    if parent_acc is not None:
        # the parent becomes an aggregate: what was mapped to it goes to its first sub-account
        moved = list(
            session.scalars(
                select(AccountMapping).where(AccountMapping.account_id == parent_acc.id)
            )
        )
        for m in moved:
            m.account_id = acc.id
        if moved:
            session.flush()
            _forget(session)
            record(
                session,
                "ledger.mapping.changed",
                tenant_id=tenant.id,
                actor=actor,
                target="account mapping",
                details={m.purpose: [parent_acc.code, code] for m in moved},
            )
    record(
        session,
        "ledger.account.created",
        tenant_id=tenant.id,
        actor=actor,
        target=code,
        details={"type": type, "parent": parent_acc.code if parent_acc else None},
    )
    return acc


def update_account(
    session: Session,
    account: Account,
    *,
    name_zh: str | None = None,
    name_en: str | None = None,
    is_active: bool | None = None,
    type: str | None = None,
    actor: str = "",
) -> Account:
    """Rename, (de)activate or retype an account. The type of an account with postings, with
    sub-accounts or under a parent cannot change; a mapped account cannot be deactivated."""
    tenant = tenant_of(session)
    _check_names(name_zh, name_en)
    changes: dict[str, Any] = {}
    if type is not None and type != account.type:
        if type not in ACCOUNT_TYPES:
            raise LedgerError(f"account type must be one of {', '.join(ACCOUNT_TYPES)}")
        if _has_postings(session, account.id):
            raise LedgerError(f"account {account.code} has postings; its type cannot change")
        if account.parent_id is not None or _has_children(session, account.id):
            raise LedgerError(
                f"account {account.code} is part of a tree of {account.type} accounts; "
                "its type cannot change"
            )
        changes["type"] = [account.type, type]
        account.type = type
    _forget(session)
    if is_active is False and account.is_active:
        purposes = _purposes_of(session, account.id)
        if purposes:
            raise LedgerError(
                f"account {account.code} is mapped to {', '.join(purposes)}; map them to "
                "another account before deactivating it"
            )
    for attr, value in (("name_zh", name_zh), ("name_en", name_en), ("is_active", is_active)):
        if value is None:
            continue
        value = value.strip() if isinstance(value, str) else value
        if getattr(account, attr) != value:
            changes[attr] = [getattr(account, attr), value]
            setattr(account, attr, value)
    session.flush()
    if changes:
        record(
            session,
            "ledger.account.changed",
            tenant_id=tenant.id,
            actor=actor,
            target=account.code,
            details=changes,
        )
    return account


def account_by_code(session: Session, code: str) -> Account | None:
    return session.scalar(select(Account).where(Account.code == code))


def postable_codes(session: Session) -> set[str]:
    child = aliased(Account)
    q = select(Account.code).where(~exists().where(child.parent_id == Account.id))
    return set(session.scalars(q))


# --- account mapping ----------------------------------------------------------------------


def get_mapping(session: Session) -> dict[str, str]:
    """Purpose -> account code, for every known purpose (defaults where none is stored)."""
    tenant_of(session)
    cache = _tx_cache(session)  # reset by set_mapping, and with every transaction
    mapping: dict[str, str] | None = cache.get("mapping")
    if mapping is None:

        def load() -> dict[str, str]:
            q = select(AccountMapping.purpose, Account.code).join(
                Account, Account.id == AccountMapping.account_id
            )
            stored = dict(session.execute(q).all())
            return {p.name: stored.get(p.name, p.default) for p in PURPOSES}

        mapping = cached(session, "ledger.mapping", load)
        cache["mapping"] = mapping
    return dict(mapping)


def set_mapping(session: Session, changes: Mapping[str, str], *, actor: str = "") -> dict[str, str]:
    """Map purposes to accounts (active, postable). Returns the whole mapping."""
    tenant = tenant_of(session)
    unknown = sorted(set(changes) - PURPOSE_NAMES)
    if unknown:
        raise LedgerError(
            f"unknown purpose {', '.join(unknown)}; known: {', '.join(sorted(PURPOSE_NAMES))}"
        )
    accounts = _load_accounts(session, set(changes.values()))
    problems: list[str] = []
    for purpose, code in sorted(changes.items()):
        problem = _account_problem(code, accounts.get(code))
        if problem:
            problems.append(f"{purpose}: {problem}")
    if problems:
        raise LedgerError("; ".join(problems))
    _forget(session)
    rows = {m.purpose: m for m in session.scalars(select(AccountMapping))}
    before = get_mapping(session)
    for purpose, code in changes.items():
        acc_id = accounts[code][0].id
        row = rows.get(purpose)
        if row is None:
            session.add(AccountMapping(purpose=purpose, account_id=acc_id))
        else:
            row.account_id = acc_id
    session.flush()
    _forget(session)
    after = get_mapping(session)
    diff = {k: [before[k], after[k]] for k in after if before[k] != after[k]}
    if diff:
        record(
            session,
            "ledger.mapping.changed",
            tenant_id=tenant.id,
            actor=actor,
            target="account mapping",
            details=diff,
        )
    return after


# --- posting ------------------------------------------------------------------------------


@dataclass(slots=True)
class _Line:
    account: str
    amount: Decimal
    currency: str
    rate: Decimal
    base: Decimal
    memo: str
    dims: dict[str, str | None]


class AccountRef(NamedTuple):
    """What posting needs of an account; kept across transactions (``erp_core.db.cache``)."""

    id: int
    code: str
    name_zh: str
    is_active: bool


def _load_accounts(session: Session, codes: Iterable[str]) -> dict[str, tuple[AccountRef, bool]]:
    """code -> (account, has sub-accounts), in one query."""
    wanted = sorted({c for c in codes if isinstance(c, str)})
    if not wanted:
        return {}
    child = aliased(Account)
    has_children = exists().where(child.parent_id == Account.id)
    q = select(Account.id, Account.code, Account.name_zh, Account.is_active, has_children).where(
        Account.code.in_(wanted)
    )
    return {
        code: (AccountRef(i, code, name, bool(active)), bool(h))
        for i, code, name, active, h in session.execute(q)
    }


_CACHE = "erp_ledger_cache"


def _tx_cache(session: Session) -> dict[str, Any]:
    """What this transaction already knows for its tenant: the tenant, the mapping, periods
    seen open (accounts are kept across transactions: ``erp_core.db.cache``). Reset with
    every transaction and tenant, and by every change of accounts, mapping or periods in it.
    """
    session.connection()  # begin the transaction, so that it can be told apart
    txn, tid = session.get_transaction(), session_tenant(session)
    held = session.info.get(_CACHE)
    if held is None or held[0] is not txn or held[1] != tid:
        held = (txn, tid, {"open": set()})
        session.info[_CACHE] = held
    cache: dict[str, Any] = held[2]
    return cache


def _forget(session: Session) -> None:
    session.info.pop(_CACHE, None)


def _cached_accounts(
    session: Session, cache: dict[str, Any], codes: set[str]
) -> dict[str, tuple[AccountRef, bool]]:
    # taken again at each call: the transaction may have changed accounts since
    known: dict[str, tuple[AccountRef, bool]] = cached(session, "ledger.accounts", dict)
    missing = {c for c in codes if c not in known}
    if missing:
        known.update(_load_accounts(session, missing))
    return {c: known[c] for c in codes if c in known}


def _account_problem(
    code: str, found: tuple[AccountRef, bool] | None, *, reversal: bool = False
) -> str | None:
    if found is None:
        return f"unknown account {code!r}"
    acc, aggregate = found
    if aggregate:
        return (
            f"account {code} ({acc.name_zh}) has sub-accounts; post to one of them "
            "(only the last level takes postings)"
        )
    if not acc.is_active and not reversal:  # undoing an entry is allowed on it still
        return f"account {code} ({acc.name_zh}) is inactive"
    return None


def _text_ok(value: object, limit: int, required: bool) -> bool:
    """The common case of :func:`_text_problem` (no problem), decided without building the
    message's label: plain ASCII text within the limit."""
    if value is None:
        return not required
    return (
        type(value) is str
        and len(value) <= limit
        and value.isascii()
        and "\x00" not in value
        and (not required or value.strip() != "")
    )


def _text_problem(value: object, what: str, limit: int, *, required: bool) -> str | None:
    if value is None:
        return f"{what} is required" if required else None
    if not isinstance(value, str):
        return f"{what} must be text"
    if required and not value.strip():
        return f"{what} must not be empty"
    if len(value) > limit:
        return f"{what} is longer than {limit} characters"
    if "\x00" in value:
        return f"{what} contains a NUL character"
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return f"{what} is not valid text (unpaired surrogate)"
    return None


#: a posting's dimensions, in the order of DIMENSIONS
_dims_of = operator.attrgetter(*DIMENSIONS)
#: the rate of postings in the tenant's currency
_RATE_ONE = Decimal(1)


def _dims_ok(values: Iterable[str | None]) -> bool:
    """:func:`_text_ok` of every dimension value (None or plain ASCII text within the limit),
    with one pass over their joined text."""
    texts = [v for v in values if v is not None]
    if not texts:
        return True
    if not all(type(v) is str for v in texts):
        return False
    if max(map(len, texts)) > LIMITS["dimension"]:
        return False
    joined = "".join(texts)
    return joined.isascii() and "\x00" not in joined


def _plain_line(pd: object, base_cur: str, base_places: int) -> _Line | None:
    """The line of the common posting (an exact amount in the tenant's currency, no rate
    given, plain text), decided at once; None when it needs :func:`_normalize`'s full
    check. What it gives is what the full check gives."""
    if type(pd) is not PostingDraft or pd.rate is not None:
        return None
    amount, account, memo = pd.amount, pd.account, pd.memo
    if (
        type(amount) is not Decimal
        or not amount.is_finite()
        or not amount
        or not -MAX_AMOUNT < amount < MAX_AMOUNT
        or (pd.currency is not None and pd.currency != base_cur)
        or type(account) is not str
        or not account
        or not (memo is None or (type(memo) is str and _text_ok(memo, LIMITS["memo"], False)))
    ):
        return None
    # as amount * 1 would; it differs from the amount when the amount has more decimals than
    # the currency (and, equal to it, is within the limit checked above)
    base = amount.quantize(_quantum(base_places), ROUND_HALF_UP)
    if base != amount:
        return None
    values = _dims_of(pd)
    if "" in values:
        values = tuple(None if v == "" else v for v in values)
    if not _dims_ok(values):
        return None
    return _Line(
        account,
        amount,
        base_cur,
        _RATE_ONE,
        base,
        memo or "",
        dict(zip(DIMENSIONS, values, strict=True)),
    )


def _normalize(
    draft: EntryDraft, tenant: Tenant, *, plain: bool = True
) -> tuple[list[_Line], list[str]]:
    """Check what needs no database; returns the lines (with tenant-currency amounts).
    ``plain``: common postings go through :func:`_plain_line` (False: all take the full
    check, which tests compare it with)."""
    problems: list[str] = []
    if not (  # the common case decided at once, else each text for its message
        _text_ok(draft.idempotency_key, LIMITS["key"], True)
        and _text_ok(draft.narration, LIMITS["narration"], True)
        and _text_ok(draft.source_type, LIMITS["stype"], False)
        and _text_ok(draft.source_id, LIMITS["sid"], False)
    ):
        for what, value, limit, required in (
            ("idempotency_key", draft.idempotency_key, LIMITS["key"], True),
            ("narration", draft.narration, LIMITS["narration"], True),
            ("source_type", draft.source_type, LIMITS["stype"], False),
            ("source_id", draft.source_id, LIMITS["sid"], False),
        ):
            p = _text_problem(value, what, limit, required=required)
            if p:
                problems.append(p)
    if not isinstance(draft.date, datetime.date) or isinstance(draft.date, datetime.datetime):
        problems.append("date must be a date (not a datetime)")
    elif not FIRST_DATE <= draft.date <= LAST_DATE:
        problems.append(f"date {draft.date} is outside {FIRST_DATE} .. {LAST_DATE}")
    postings = draft.postings
    if not isinstance(postings, tuple | list) or len(postings) < 2:
        problems.append("an entry needs at least two postings")
        return [], problems
    if len(postings) > MAX_POSTINGS:
        problems.append(f"an entry has at most {MAX_POSTINGS} postings")
        return [], problems
    base_cur = tenant.currency
    base_places = minor_unit(base_cur)
    lines: list[_Line] = []
    plain = plain and isinstance(base_cur, str) and bool(CURRENCY_RE.match(base_cur))
    for n, pd in enumerate(postings, 1):
        if plain:
            line = _plain_line(pd, base_cur, base_places)
            if line is not None:
                lines.append(line)
                continue
        where = f"posting {n}"
        if not isinstance(pd, PostingDraft):
            problems.append(f"{where} is not a PostingDraft")
            continue
        before = len(problems)
        if not isinstance(pd.account, str) or not pd.account:
            problems.append(f"{where}: account code is required")
        currency = base_cur if pd.currency is None else pd.currency
        if not isinstance(currency, str) or not CURRENCY_RE.match(currency):
            problems.append(f"{where}: currency {currency!r} must be three capital letters")
            currency = "???"
        try:
            amount = _as_decimal(pd.amount, f"{where}: amount")
        except LedgerError as exc:
            problems.append(str(exc))
            amount = Decimal(0)
        else:
            places = minor_unit(currency)
            if amount == 0:
                problems.append(f"{where}: amount must not be zero")
            elif abs(amount) >= MAX_AMOUNT:
                problems.append(f"{where}: amount {amount} is too large")
            elif not _fits(amount, places):
                problems.append(
                    f"{where}: amount {amount} has more decimals than {currency} allows ({places})"
                )
        rate = Decimal(1)
        if pd.rate is not None:
            try:
                rate = _as_decimal(pd.rate, f"{where}: rate")
            except LedgerError as exc:
                problems.append(str(exc))
        if currency == base_cur:
            if rate != 1:
                problems.append(
                    f"{where}: the rate of the tenant currency {base_cur} is 1, not {rate}"
                )
        elif pd.rate is None:
            problems.append(f"{where}: a rate to {base_cur} is required for {currency}")
        elif rate <= 0:
            problems.append(f"{where}: rate must be greater than zero")
        elif rate >= MAX_RATE or not _fits(rate, RATE_PLACES):
            problems.append(f"{where}: rate {rate} is out of range or has over 10 decimals")
        if not _text_ok(pd.memo, LIMITS["memo"], False):
            p_memo = _text_problem(pd.memo, f"{where}: memo", LIMITS["memo"], required=False)
            if p_memo:
                problems.append(p_memo)
        dims = {d: None if v == "" else v for d, v in zip(DIMENSIONS, _dims_of(pd), strict=True)}
        if not _dims_ok(dims.values()):  # the common case decided at once, else each one
            for dim, value in dims.items():
                dp = _text_problem(value, f"{where}: {dim}", LIMITS["dimension"], required=False)
                if dp:
                    problems.append(dp)
        if len(problems) > before:
            continue
        if rate == 1:
            base = amount.quantize(_quantum(base_places), ROUND_HALF_UP)  # as amount * 1 would
        else:
            with localcontext() as ctx:
                ctx.prec = 60
                base = (amount * rate).quantize(_quantum(base_places), ROUND_HALF_UP)
        if abs(base) >= MAX_AMOUNT:
            problems.append(f"{where}: {base_cur} amount {base} is too large")
        lines.append(
            _Line(
                account=pd.account,
                amount=amount,
                currency=currency,
                rate=rate,
                base=base,
                memo=pd.memo or "",
                dims=dims,
            )
        )
    if problems:
        return lines, problems
    problems.extend(_balance_problems(lines, base_cur, base_places))
    return lines, problems


def _balance_problems(lines: list[_Line], base_cur: str, base_places: int) -> list[str]:
    """Each currency must balance; then the tenant-currency amounts, after the rounding rule:
    when the unrounded amounts balance, a rounding difference goes to the largest
    foreign-currency posting (the first one of them on a tie)."""
    if all(x.currency == base_cur for x in lines) and sum(x.amount for x in lines) == 0:
        # the common entry: its rates are 1 and its amounts fit the currency (checked
        # before), so amounts times rates and the rounded amounts are the amounts themselves
        return []
    problems: list[str] = []
    by_cur: dict[str, list[_Line]] = defaultdict(list)
    for line in lines:
        by_cur[line.currency].append(line)
    for cur, group in sorted(by_cur.items()):
        total = sum((x.amount for x in group), Decimal(0))
        if total != 0:
            debit = sum((x.amount for x in group if x.amount > 0), Decimal(0))
            credit = sum((x.amount for x in group if x.amount < 0), Decimal(0))
            places = minor_unit(cur)
            problems.append(
                f"the entry does not balance in {cur}: debits {fmt(debit, places)}, credits "
                f"{fmt(credit, places)}, difference {fmt(total, places)}"
            )
    if problems:
        return problems
    with localcontext() as ctx:
        ctx.prec = 60
        exact = sum((x.amount * x.rate for x in lines), Decimal(0))
    if exact != 0:
        cur_rates = sorted(
            cur for cur, g in by_cur.items() if len({x.rate for x in g}) > 1 and cur != base_cur
        )
        hint = (
            f" (postings in {', '.join(cur_rates)} use different rates; use one rate per currency)"
            if cur_rates
            else ""
        )
        return [
            f"the entry does not balance in {base_cur}: amounts times rates add up to "
            f"{exact.normalize():f}{hint}"
        ]
    residual = sum((x.base for x in lines), Decimal(0))
    if residual != 0:
        foreign = [x for x in lines if x.currency != base_cur]
        target = max(foreign, key=lambda x: abs(x.base))  # first of the largest on a tie
        target.base -= residual
    return []


#: a line's dimension values, in the order of DIMENSIONS
_line_dims = operator.itemgetter(*DIMENSIONS)
#: the rate of most lines (the tenant's currency), as :func:`fmt_rate` writes it
_RATE_ONE_TEXT = fmt_rate(_RATE_ONE)
#: what encodes the digest's body: its keys are written in sorted order below, and nothing
#: nested in it is a mapping, so it needs no sorting of keys
_DIGEST_JSON = json.JSONEncoder(separators=(",", ":"))


def _digest(lines: Sequence[_Line], draft: EntryDraft, reverses_id: int | None) -> str:
    """The entry's content digest: SHA-256 of its content as compact JSON with the keys in
    sorted order. Stored with the entry and compared on a replay of its key, so the text
    must never change (tests pin it)."""
    body = {  # in sorted order of keys
        "date": draft.date.isoformat(),
        "narration": draft.narration,
        "postings": [
            [
                x.account,
                fmt(x.amount, 4),
                x.currency,
                _RATE_ONE_TEXT if x.rate == _RATE_ONE else fmt_rate(x.rate),
                x.memo,
                list(_line_dims(x.dims)),
            ]
            for x in lines
        ],
        "reverses": reverses_id,
        "source": [draft.source_type, draft.source_id],
    }
    return hashlib.sha256(_DIGEST_JSON.encode(body).encode()).hexdigest()


def _existing(session: Session, key: str) -> JournalEntry | None:
    return session.scalar(select(JournalEntry).where(JournalEntry.idempotency_key == key))


def _replay_problem(found: JournalEntry) -> str:
    return _replay_message(found.idempotency_key, found.id)


def _replay_message(key: str, entry_id: int) -> str:
    return (
        f"idempotency key {key!r} was already used by entry {entry_id} "
        "with different content; use a new key for a different event"
    )


_ENTRY_TABLE = cast(Table, JournalEntry.__table__)
#: new entries, their (key, id) returned; their postings (built once)
_INSERT_ENTRIES = insert(_ENTRY_TABLE).returning(_ENTRY_TABLE.c.idempotency_key, _ENTRY_TABLE.c.id)
#: a few entries, their ids back (erp_core.db.bulk)
_ENTRY_ROWS = RowInsert(_ENTRY_TABLE)
#: many postings in one executemany (erp_core.db.bulk)
_INSERT_POSTINGS = RowInsert(cast(Table, Posting.__table__))
#: the entries already posted under some keys: (key, id, digest), built once
_POSTED = select(JournalEntry.idempotency_key, JournalEntry.id, JournalEntry.digest).where(
    JournalEntry.idempotency_key.in_(bindparam("keys", expanding=True))
)
#: the same on the driver's cursor (its tenant named: a Core statement)
_POSTED_D = Direct(_POSTED.where(JournalEntry.tenant_id == TenantValue(bindparam("tid"))))


def _replay(found: JournalEntry, digest: str) -> JournalEntry:
    if found.digest != digest:
        raise LedgerError(_replay_problem(found))
    return found


def post_entry(
    session: Session,
    draft: EntryDraft,
    *,
    hooks: Any = None,
    actor: str = "",
) -> JournalEntry:
    """Validate and post ``draft``; returns the posted entry (postings loaded).

    Refused with :class:`LedgerError` (nothing written) unless: every currency balances and so
    do the tenant-currency amounts (rounding rule in ``docs/ledger.md``); the accounts exist,
    are active and take postings; the period is open; amounts fit their currency's decimals;
    rates are positive (1 for the tenant currency); and ``erp_ledger_validate`` of the tenant's
    plugins returns no problem (``hooks`` default to the tenant's, from the session's registry:
    see :func:`erp_core.tenancy.service.tenant_hooks`).

    If the tenant already has an entry with ``draft.idempotency_key``, that entry is returned
    unchanged, or :class:`LedgerError` raised if the draft's content differs. Flushes, never
    commits.
    """
    _post_queued(session)
    return _post(session, draft, hooks=_hooks(session, hooks), actor=actor)


def _hooks(session: Session, hooks: Any) -> Any:
    if hooks is not None:
        return hooks
    from erp_core.tenancy.service import tenant_hooks

    return tenant_hooks(session)


def _post(
    session: Session,
    draft: EntryDraft,
    *,
    hooks: Any,
    actor: str,
    reverses: JournalEntry | None = None,
) -> JournalEntry:
    if not isinstance(draft, EntryDraft):
        raise LedgerError("post_entry takes an EntryDraft")
    cache = _tx_cache(session)
    tenant = cache.get("tenant") or tenant_of(session)
    cache["tenant"] = tenant  # held here: the session's identity map keeps it only weakly
    if reverses is None:
        lines, problems = _normalize(draft, tenant)
    else:
        lines = [
            _Line(
                account=p.account.code,
                amount=-p.amount,
                currency=p.currency,
                rate=p.rate,
                base=-p.amount_base,
                memo=p.memo,
                dims={d: getattr(p, DIM_COLUMNS[d]) for d in DIMENSIONS},
            )
            for p in reverses.postings
        ]
        problems = []
        for what, value, limit in (
            ("narration", draft.narration, LIMITS["narration"]),
            ("idempotency_key", draft.idempotency_key, LIMITS["key"]),
        ):
            p = _text_problem(value, what, limit, required=True)
            if p:
                problems.append(p)
    if problems:
        raise LedgerError("; ".join(problems))
    digest = _digest(lines, draft, reverses.id if reverses else None)
    if hooks is not None:  # a replay answers without asking the plugins again
        found = _existing(session, draft.idempotency_key)
        if found is not None:
            if reverses is not None and found.reverses_id == reverses.id and found.digest != digest:
                # reversed meanwhile (another reason, by someone else)
                raise LedgerError(f"entry {reverses.id} was already reversed by entry {found.id}")
            return _replay(found, digest)

    accounts = _cached_accounts(session, cache, {x.account for x in lines})
    problems.extend(_account_problems(lines, accounts, reversal=reverses is not None))
    period = period_of(draft.date)
    problem = _period_problem(session, cache, tenant.id, period)
    if problem:
        problems.append(problem)
    if problems:
        found = _existing(session, draft.idempotency_key) if hooks is None else None
        if found is not None:  # a replay of an entry posted before the period was locked
            return _replay(found, digest)
        raise LedgerError("; ".join(problems))
    if hooks is not None:
        results = hooks.erp_ledger_validate(session=session, draft=draft)
        found_by_plugins = [str(p) for ps in results for p in ps or ()]
        if found_by_plugins:
            raise LedgerError("; ".join(found_by_plugins))

    values = _entry_values(tenant.id, draft, digest, reverses, actor)
    # Core statements (the ORM's bulk machinery costs more than the database here).
    # ON CONFLICT DO NOTHING: a concurrent post of the same key (or reversal of the same
    # entry) that committed first wins, and this one answers with it.
    dialect = session.get_bind().dialect.name
    table = cast(Table, JournalEntry.__table__)
    ins: Any = (postgresql.insert if dialect == "postgresql" else sqlite.insert)(table)
    stmt = ins.values(**values).on_conflict_do_nothing().returning(table.c.id)
    entry_id = session.execute(stmt).scalar_one_or_none()
    if entry_id is None:  # another transaction inserted it meanwhile and committed first
        found = _existing(session, draft.idempotency_key)
        if reverses is not None:
            other = reversal_of(session, reverses.id)
            if other is None and found is not None:
                raise LedgerError(
                    f"entry {found.id} already uses the key {draft.idempotency_key!r} of the "
                    f"reversal of entry {reverses.id}"
                )
            raise LedgerError(f"entry {reverses.id} was already reversed by entry {other}")
        if found is None:
            raise LedgerError("the entry conflicts with another one; try again")
        return _replay(found, digest)
    session.execute(
        insert(cast(Table, Posting.__table__)),
        _posting_rows(tenant.id, entry_id, draft, lines, accounts),
    )
    return _held_entry(session, entry_id, values)


def _account_problems(
    lines: Sequence[_Line], accounts: Mapping[str, tuple[AccountRef, bool]], *, reversal: bool
) -> list[str]:
    problems = []
    for n, x in enumerate(lines, 1):
        problem = _account_problem(x.account, accounts.get(x.account), reversal=reversal)
        if problem:
            problems.append(f"posting {n}: {problem}")
    return problems


#: a period's lock (what its refusal names), on the driver's cursor
_PERIOD_LOCK_D = Direct(
    select(PeriodLock.period, PeriodLock.locked_by, PeriodLock.locked_at).where(
        PeriodLock.tenant_id == TenantValue(bindparam("tid")),
        PeriodLock.period == bindparam("period"),
    )
)


def _period_problem(
    session: Session, cache: dict[str, Any], tenant_id: int, period: str
) -> str | None:
    """Why ``period`` takes no posting (it is locked), or None."""
    if period in cache["open"]:
        return None
    _guard_period(session, tenant_id, period, exclusive=False)
    lock = _PERIOD_LOCK_D.first(flushed_connection(session), {"tid": tenant_id, "period": period})
    if lock is not None:
        return _lock_problem(lock)
    # open until this transaction ends: it holds the period's shared lock (PostgreSQL) or
    # will hold the database's write lock (SQLite)
    cache["open"].add(period)
    return None


def _entry_values(
    tenant_id: int,
    draft: EntryDraft,
    digest: str,
    reverses: JournalEntry | None,
    actor: str,
) -> dict[str, Any]:
    return {
        "tenant_id": tenant_id,
        "date": draft.date,
        "period": period_of(draft.date),
        "narration": draft.narration,
        "idempotency_key": draft.idempotency_key,
        "digest": digest,
        "source_type": draft.source_type,
        "source_id": draft.source_id,
        "reverses_id": reverses.id if reverses is not None else None,
        "posted_by": actor[:254],
        "posted_at": utcnow(),
    }


def _posting_rows(
    tenant_id: int,
    entry_id: int,
    draft: EntryDraft,
    lines: Sequence[_Line],
    accounts: Mapping[str, tuple[AccountRef, bool]],
) -> list[dict[str, Any]]:
    period = period_of(draft.date)
    return [
        {
            "tenant_id": tenant_id,
            "entry_id": entry_id,
            "line": n,
            "account_id": accounts[x.account][0].id,
            "date": draft.date,
            "period": period,
            "currency": x.currency,
            "amount": x.amount,
            "rate": x.rate,
            "amount_base": x.base,
            "memo": x.memo,
            "channel": x.dims["channel"],
            "store": x.dims["store"],
            "sku": x.dims["sku"],
            "order_ref": x.dims["order"],
            "warehouse": x.dims["warehouse"],
        }
        for n, x in enumerate(lines, 1)
    ]


def _held_entry(session: Session, entry_id: int, values: dict[str, Any]) -> JournalEntry:
    """The entry as stored, known to the session without reading it back; its postings load
    when first used."""
    entry = JournalEntry(id=entry_id, **values)
    make_transient_to_detached(entry)
    session.add(entry)
    return entry


#: ``session.info`` key of the open :func:`posting_batch`: its queued (draft, actor) pairs
_BATCH_KEY = "erp_ledger_posting_batch"


@contextmanager
def posting_batch(session: Session) -> Iterator[None]:
    """Within the block, :func:`post_entries` calls on ``session`` that want nothing back
    (``returning=False``, no hooks of their own) queue their drafts, and the block's end
    posts them all with one :func:`post_entries`: one look-up of the keys already posted, one
    insert of entries and one of postings, instead of one of each per call. For work that
    posts several kinds of entries at once, such as a shipment's revenue and, through the
    stock valuation hook, its cost of goods sold.

    The entries are posted in the order of the calls, each with its call's actor. A refused
    draft raises :class:`LedgerError` when the block ends and nothing of the batch is
    posted; a call that wants its entries back first posts what is queued. Nothing is posted
    when the block raises (its transaction is being abandoned). Nested blocks join the
    outermost one."""
    if session.info.get(_BATCH_KEY) is not None:
        yield
        return
    queued: list[tuple[EntryDraft, str]] = []
    session.info[_BATCH_KEY] = queued
    try:
        yield
    finally:
        session.info.pop(_BATCH_KEY, None)
    if queued:  # the block ended without raising
        _post_entries(session, queued, hooks=None, returning=False)


def post_entries(
    session: Session,
    drafts: Iterable[EntryDraft],
    *,
    hooks: Any = None,
    actor: str = "",
    returning: bool = True,
) -> list[JournalEntry]:
    """Validate and post several drafts as one piece of bulk work (a page of shipments, the
    valuations of a delivery); returns their entries, in order (with ``returning=False``, an
    empty list: a caller that does not use the entries saves making them).

    Each draft is checked exactly as by :func:`post_entry`, and replays work the same way (a
    key already posted returns that entry; the same key twice in ``drafts`` with the same
    content posts once). All or nothing: if any draft is refused, :class:`LedgerError` names
    it by position and key and nothing is written. The new entries and their postings are
    written with one statement each, not one per entry. Flushes, never commits.
    """
    todo = list(drafts)
    if not todo:
        return []
    for n, d in enumerate(todo, 1):
        if not isinstance(d, EntryDraft):
            raise LedgerError(f"entry {n}: post_entries takes EntryDrafts")
    queued: list[tuple[EntryDraft, str]] | None = session.info.get(_BATCH_KEY)
    if queued is not None:
        if not returning and hooks is None:
            queued.extend((d, actor) for d in todo)
            return []
        _post_queued(session)
    return _post_entries(session, [(d, actor) for d in todo], hooks=hooks, returning=returning)


def _post_queued(session: Session) -> None:
    """Post what the open :func:`posting_batch` queued, before an entry posted at once."""
    queued: list[tuple[EntryDraft, str]] | None = session.info.get(_BATCH_KEY)
    if queued:
        earlier = list(queued)
        queued.clear()
        _post_entries(session, earlier, hooks=None, returning=False)


def _post_entries(
    session: Session,
    items: Sequence[tuple[EntryDraft, str]],
    *,
    hooks: Any,
    returning: bool,
) -> list[JournalEntry]:
    """:func:`post_entries` of checked drafts, each with its actor."""
    todo = [d for d, _ in items]
    hooks = _hooks(session, hooks)
    cache = _tx_cache(session)
    tenant = cache.get("tenant") or tenant_of(session)
    cache["tenant"] = tenant
    problems: list[str] = []

    def refuse(n: int, d: EntryDraft, what: Iterable[str]) -> None:
        problems.append(f"entry {n} ({d.idempotency_key!r}): " + "; ".join(what))

    checked: list[tuple[EntryDraft, list[_Line], str]] = []
    for n, d in enumerate(todo, 1):
        lines, found_problems = _normalize(d, tenant)
        if found_problems:
            refuse(n, d, found_problems)
        checked.append((d, lines, _digest(lines, d, None)))
    if problems:
        raise LedgerError(" | ".join(problems))
    keys = sorted({d.idempotency_key for d, _, _ in checked})
    earlier_ones: dict[str, tuple[int, str]] = {}  # key -> (entry id, digest)
    conn = flushed_connection(session)
    for i in range(0, len(keys), 500):
        for key, eid, dg in _POSTED_D.rows(conn, {"keys": keys[i : i + 500], "tid": tenant.id}):
            earlier_ones[key] = (eid, dg)
    fresh: dict[str, tuple[int, EntryDraft, list[_Line], str]] = {}
    for n, (d, lines, digest) in enumerate(checked, 1):
        earlier = earlier_ones.get(d.idempotency_key)
        if earlier is not None:
            if earlier[1] != digest:
                refuse(n, d, [_replay_message(d.idempotency_key, earlier[0])])
            continue
        twin = fresh.get(d.idempotency_key)
        if twin is not None:
            if twin[3] != digest:
                refuse(n, d, [f"entry {twin[0]} of the batch has the same key, other content"])
            continue
        fresh[d.idempotency_key] = (n, d, lines, digest)
    accounts = _cached_accounts(
        session, cache, {x.account for _, _, lines, _ in fresh.values() for x in lines}
    )
    for n, d, lines, _ in fresh.values():
        found_problems = _account_problems(lines, accounts, reversal=False)
        problem = _period_problem(session, cache, tenant.id, period_of(d.date))
        if problem:
            found_problems.append(problem)
        if found_problems:
            refuse(n, d, found_problems)
    if problems:
        raise LedgerError(" | ".join(problems))
    if hooks is not None:
        for n, d, _, _ in fresh.values():
            results = hooks.erp_ledger_validate(session=session, draft=d)
            by_plugins = [str(p) for ps in results for p in ps or ()]
            if by_plugins:
                refuse(n, d, by_plugins)
        if problems:
            raise LedgerError(" | ".join(problems))
    if fresh:
        new = list(fresh.values())
        values = [
            _entry_values(tenant.id, d, digest, None, items[n - 1][1]) for n, d, _, digest in new
        ]
        try:
            # a savepoint: a concurrent transaction that posted one of the keys first makes
            # the batch fall back to one entry at a time, which answers with its entry
            with session.begin_nested():
                # matched by key, the rows come back in any order (one statement for all)
                if len(values) <= FEW_ROWS:  # (the keys of a batch are distinct)
                    made = _ENTRY_ROWS.ids(session.connection(), values)
                    ids = {v["idempotency_key"]: i for v, i in zip(values, made, strict=True)}
                else:
                    ids = {k: i for k, i in session.execute(_INSERT_ENTRIES, values)}
                rows = [
                    row
                    for _, d, lines, _ in new
                    for row in _posting_rows(tenant.id, ids[d.idempotency_key], d, lines, accounts)
                ]
                _INSERT_POSTINGS(session.connection(), rows)
        except IntegrityError:
            done = [_post(session, d, hooks=None, actor=a) for d, a in items]
            return done if returning else []
    if not returning:
        return []
    posted: dict[str, JournalEntry] = {}
    for key, (eid, _) in earlier_ones.items():
        entry = session.get(JournalEntry, eid)
        assert entry is not None
        posted[key] = entry
    if fresh:
        for v in values:
            key = v["idempotency_key"]
            posted[key] = _held_entry(session, ids[key], v)
    return [posted[d.idempotency_key] for d in todo]


def reverse_entry(
    session: Session,
    entry_id: int,
    *,
    date: datetime.date | None = None,
    reason: str,
    hooks: Any = None,
    actor: str = "",
) -> JournalEntry:
    """Post the mirror image of entry ``entry_id`` (every amount negated, same accounts, rates,
    tenant-currency amounts and dimensions), linked to it by ``reverses_id``.

    ``date`` defaults to the original's date and may not be earlier; its period must be open.
    An entry is reversed at most once, and a reversal is not reversed (post a new entry).
    """
    tenant = tenant_of(session)
    entry = session.get(JournalEntry, entry_id)
    if entry is None or entry.tenant_id != tenant.id:
        raise LedgerError(f"no journal entry {entry_id}")
    if not isinstance(reason, str) or not reason.strip():
        raise LedgerError("a reversal needs a reason")
    if len(reason) > 500:
        raise LedgerError("the reason is longer than 500 characters")
    if entry.reverses_id is not None:
        raise LedgerError(
            f"entry {entry.id} is the reversal of entry {entry.reverses_id}; post a new entry "
            "instead of reversing a reversal"
        )
    other = reversal_of(session, entry.id)
    if other is not None:
        raise LedgerError(f"entry {entry.id} was already reversed by entry {other}")
    day = entry.date if date is None else date
    if not isinstance(day, datetime.date) or isinstance(day, datetime.datetime):
        raise LedgerError("date must be a date")
    if day < entry.date:
        raise LedgerError(
            f"a reversal cannot be dated {day}, before the entry it reverses ({entry.date})"
        )
    if day > LAST_DATE:
        raise LedgerError(f"date {day} is after {LAST_DATE}")
    draft = EntryDraft(
        date=day,
        narration=f"Reversal of entry {entry.id}: {reason.strip()}",
        postings=(),
        idempotency_key=f"reversal:{entry.id}",
        source_type=entry.source_type,
        source_id=entry.source_id,
    )
    _post_queued(session)
    return _post(session, draft, hooks=_hooks(session, hooks), actor=actor, reverses=entry)


def reversal_of(session: Session, entry_id: int) -> int | None:
    """The id of the entry that reverses ``entry_id``, if any."""
    return session.scalar(select(JournalEntry.id).where(JournalEntry.reverses_id == entry_id))


# --- stock valuation ----------------------------------------------------------------------


def post_valuation(session: Session, valuation: StockValuation) -> JournalEntry | None:
    """Post the entry of one valued stock move (idempotent per move); None for a zero value.

    Accounts come from the tenant's account mapping (``VALUATION_ACCOUNTS``); the value is
    rounded to the tenant currency's minor unit (half up).
    """
    draft = _valuation_draft(session, valuation)
    return None if draft is None else post_entry(session, draft, actor="inventory")


def post_valuations(
    session: Session, valuations: Iterable[StockValuation], *, returning: bool = True
) -> list[JournalEntry | None]:
    """:func:`post_valuation` for the valued moves of one stock operation (a delivery of many
    lines, a page of shipments), posted together with :func:`post_entries`; all or nothing.
    With ``returning=False`` nothing is returned (see :func:`post_entries`)."""
    valuations = list(valuations)
    if not valuations:
        return []
    cache = _tx_cache(session)
    tenant = cache.get("tenant") or tenant_of(session)
    cache["tenant"] = tenant
    mapping = get_mapping(session)
    drafts = [_valuation_draft(session, v, tenant, mapping) for v in valuations]
    todo = [d for d in drafts if d is not None]
    posted = iter(post_entries(session, todo, actor="inventory", returning=returning))
    return [None if d is None else next(posted) for d in drafts] if returning else []


def _valuation_draft(
    session: Session,
    valuation: StockValuation,
    tenant: Tenant | None = None,
    mapping: Mapping[str, str] | None = None,
) -> EntryDraft | None:
    if tenant is None:
        cache = _tx_cache(session)
        tenant = cache.get("tenant") or tenant_of(session)
        cache["tenant"] = tenant
    if valuation.kind not in VALUATION_ACCOUNTS:
        raise LedgerError(f"unknown stock valuation kind {valuation.kind!r}")
    if valuation.currency != tenant.currency:
        raise LedgerError(
            f"stock is valued in {valuation.currency}, but the tenant's currency is "
            f"{tenant.currency}"
        )
    value = _as_decimal(valuation.value, "valuation value")
    if value < 0:
        raise LedgerError(f"a stock valuation is positive, got {value}")
    value = value.quantize(Decimal(1).scaleb(-minor_unit(tenant.currency)), ROUND_HALF_UP)
    if value == 0:
        return None
    unknown = sorted(set(valuation.dimensions) - {"channel", "store", "order"})
    if unknown:
        raise LedgerError(f"unknown posting dimension {', '.join(unknown)}")
    debit, credit = VALUATION_ACCOUNTS[valuation.kind]
    if mapping is None:
        mapping = get_mapping(session)
    occurred = valuation.occurred_at
    if occurred.tzinfo is None:
        raise LedgerError("occurred_at must be an aware datetime")
    day = occurred.astimezone(ZoneInfo(tenant.timezone)).date()
    dims: dict[str, Any] = {
        "sku": valuation.sku_code,
        "warehouse": valuation.warehouse_code,
        **valuation.dimensions,
    }
    source_type = valuation.source_type or "stock_move"
    source_id = valuation.source_id if valuation.source_type else str(valuation.move_id)
    memo = f"{valuation.quantity.normalize():f} x {valuation.unit_cost.normalize():f}"
    return EntryDraft(
        date=day,
        narration=f"stock {valuation.kind}: {valuation.sku_code} x "
        f"{valuation.quantity.normalize():f}",
        postings=(
            PostingDraft(account=mapping[debit], amount=value, memo=memo, **dims),
            PostingDraft(account=mapping[credit], amount=-value, memo=memo, **dims),
        ),
        idempotency_key=f"stock-move:{valuation.move_id}",
        source_type=source_type,
        source_id=source_id,
    )


# --- periods ------------------------------------------------------------------------------


def locked_periods(session: Session) -> list[PeriodLock]:
    return list(session.scalars(select(PeriodLock).order_by(PeriodLock.period)))


def is_locked(session: Session, period: str) -> bool:
    q = select(PeriodLock.id).where(PeriodLock.period == check_period(period))
    return session.scalar(q) is not None


def lock_period(session: Session, period: str, *, actor: str) -> PeriodLock:
    """Lock ``period`` (``YYYY-MM``): nothing more is posted or reversed into it. Locking a
    locked period returns its lock. Waits for posts in flight into the period (PostgreSQL)."""
    tenant = tenant_of(session)
    check_period(period)
    _guard_period(session, tenant.id, period, exclusive=True)
    lock = session.scalar(select(PeriodLock).where(PeriodLock.period == period))
    if lock is not None:
        return lock
    lock = PeriodLock(period=period, locked_by=(actor or "")[:254])
    _forget(session)
    session.add(lock)
    session.flush()
    record(session, "ledger.period.locked", tenant_id=tenant.id, actor=actor, target=period)
    return lock


def unlock_period(session: Session, period: str, *, actor: str) -> None:
    """Open a locked period again (audited)."""
    tenant = tenant_of(session)
    check_period(period)
    lock = session.scalar(select(PeriodLock).where(PeriodLock.period == period))
    if lock is None:
        raise LedgerError(f"period {period} is not locked")
    details = {"locked_by": lock.locked_by, "locked_at": lock.locked_at.isoformat()}
    session.delete(lock)
    session.flush()
    record(
        session,
        "ledger.period.unlocked",
        tenant_id=tenant.id,
        actor=actor,
        target=period,
        details=details,
    )


# --- reports ------------------------------------------------------------------------------


def trial_balance(session: Session, *, until: datetime.date | None = None) -> list[TrialBalanceRow]:
    """Balances of every account with postings, per currency, up to ``until`` (inclusive).

    In each currency the balances add up to zero, and so do the tenant-currency balances.
    """
    tenant_of(session)
    debit = func.sum(case((Posting.amount > 0, Posting.amount), else_=None))
    credit = func.sum(case((Posting.amount < 0, Posting.amount), else_=None))
    q = (
        select(
            Account.code,
            Account.name_zh,
            Account.name_en,
            Account.type,
            Posting.currency,
            debit,
            credit,
            func.sum(Posting.amount),
            func.sum(Posting.amount_base),
        )
        .join(Account, Account.id == Posting.account_id)
        .group_by(Account.code, Account.name_zh, Account.name_en, Account.type, Posting.currency)
        .order_by(Account.code, Posting.currency)
    )
    if until is not None:
        q = q.where(Posting.date <= until)
    zero = Decimal("0.0000")
    return [
        TrialBalanceRow(
            account=code,
            name_zh=zh,
            name_en=en,
            type=type_,
            currency=cur,
            debit=d if d is not None else zero,
            credit=c if c is not None else zero,
            balance=bal,
            balance_base=base,
        )
        for code, zh, en, type_, cur, d, c, bal, base in session.execute(q)
    ]


GROUPS = ("period", *DIMENSIONS)


def balances(
    session: Session,
    *,
    account: str | None = None,
    period: str | None = None,
    since: datetime.date | None = None,
    until: datetime.date | None = None,
    group_by: Sequence[str] = (),
    where: Mapping[str, str] | None = None,
) -> list[BalanceRow]:
    """Balances per account and currency, optionally grouped by period and dimensions.

    ``account`` selects that account and its sub-accounts (rows stay per postable account);
    ``period`` (``YYYY-MM``), ``since`` and ``until`` limit the dates; ``where`` keeps postings
    with the given dimension values; ``group_by`` names from ``period``, ``channel``, ``store``,
    ``sku``, ``order``, ``warehouse``.
    """
    tenant_of(session)
    bad = [g for g in group_by if g not in GROUPS]
    if bad:
        raise LedgerError(f"cannot group by {', '.join(bad)}; choose from {', '.join(GROUPS)}")
    where = dict(where or {})
    bad = [k for k in where if k not in DIMENSIONS]
    if bad:
        raise LedgerError(f"unknown dimension {', '.join(bad)}")
    groups = list(dict.fromkeys(group_by))
    cols: list[Any] = [
        Posting.period if g == "period" else getattr(Posting, DIM_COLUMNS[g]) for g in groups
    ]
    q = (
        select(
            Account.code,
            Posting.currency,
            func.sum(Posting.amount),
            func.sum(Posting.amount_base),
            *cols,
        )
        .join(Account, Account.id == Posting.account_id)
        .group_by(Account.code, Posting.currency, *cols)
        .order_by(Account.code, Posting.currency, *cols)
    )
    if account is not None:
        acc = account_by_code(session, account)
        if acc is None:
            raise LedgerError(f"unknown account {account!r}")
        q = q.where(Account.code.startswith(account, autoescape=True))
    if period is not None:
        q = q.where(Posting.period == check_period(period))
    if since is not None:
        q = q.where(Posting.date >= since)
    if until is not None:
        q = q.where(Posting.date <= until)
    for dim, value in where.items():
        q = q.where(getattr(Posting, DIM_COLUMNS[dim]) == value)
    out: list[BalanceRow] = []
    for row in session.execute(q):
        code, cur, amount, base, *keys = row
        values = dict(zip(groups, keys, strict=True))
        out.append(
            BalanceRow(
                account=code,
                currency=cur,
                amount=amount,
                amount_base=base,
                period=values.pop("period", None),
                dimensions=values,
            )
        )
    return out
