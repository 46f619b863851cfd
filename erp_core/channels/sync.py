"""The sync engine: incremental fetch of a sales account's orders and refunds.

Per (account, stream) a durable cursor (:class:`~erp_core.channels.sync_models.ChannelCursor`)
says how far the sync got. :func:`run` splits the time from there (minus an overlap, because
platforms' modified times lag) up to now minus a safety lag into windows no longer than the
connector's ``max_window``, and pages through each window with the connector. Each page is one
transaction: the objects' versions are recorded in ``core_channel_object`` (unique by account,
kind and platform id), the tenant's hooks get the new and changed versions (the page's orders
at once through ``erp_channel_orders``, or one by one through ``erp_channel_order``; refunds
through ``erp_channel_refund``), and the cursor moves to the next page (or, at the end of the
window, ``synced_until`` to the window's end). A page that fails (an exception, throttling
that outlasts the back-off, a crash) commits nothing, and the next run fetches it again from
the cursor: no loss, and the object table makes sure nothing is delivered twice.

The engine does not care in which order a connector pages through a window (Taobao's
newest-first paging is read backwards from the last page by its connector).
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, fields, is_dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any, Literal, cast

from sqlalchemy import bindparam, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from erp_core.channels.errors import AccountError
from erp_core.channels.interfaces import (
    ChannelAuthError,
    ChannelError,
    ChannelThrottled,
    Cursor,
    Page,
    SalesChannel,
    Window,
)
from erp_core.channels.models import ChannelAccount
from erp_core.channels.sync_models import ChannelCursor, ChannelObject
from erp_core.channels.types import Order, Refund
from erp_core.db.base import utcnow
from erp_core.db.bulk import FEW_ROWS
from erp_core.db.direct import Direct, flushed_connection
from erp_core.db.session import Database, TenantValue, session_tenant
from erp_core.plugins.registry import PluginRegistry
from erp_core.settings import Settings
from erp_core.tenancy.service import enabled_plugins, tenant_hooks

log = logging.getLogger(__name__)

Stream = Literal["orders", "refunds"]
STREAMS: tuple[Stream, ...] = ("orders", "refunds")

#: How far before ``synced_until`` an incremental run starts again (modified times lag).
DEFAULT_OVERLAP = timedelta(minutes=5)
#: Windows never reach past now minus this (rows still being written at the platform).
DEFAULT_SAFETY_LAG = timedelta(minutes=2)
#: Where a first incremental run starts when no ``since`` is given.
DEFAULT_FIRST_LOOKBACK = timedelta(days=1)
#: How often a throttled page is asked again (after the HTTP client's own retries).
DEFAULT_THROTTLE_RETRIES = 4
MAX_BACKOFF = 60.0


class SyncError(Exception):
    """The sync of an account stopped; the cursor stands at the last committed page."""

    def __init__(self, message: str, result: SyncResult | None = None) -> None:
        super().__init__(message)
        self.result = result


class SyncAuthError(SyncError):
    """The platform refused the account's credentials or token."""


@dataclass
class SyncResult:
    """What one run did."""

    account_id: int
    stream: str
    windows: int = 0
    pages: int = 0
    new: int = 0
    changed: int = 0
    unchanged: int = 0
    stale: int = 0
    synced_until: datetime | None = None

    @property
    def delivered(self) -> int:
        return self.new + self.changed

    def summary(self) -> str:
        until = self.synced_until.isoformat() if self.synced_until else "-"
        return (
            f"{self.stream}: {self.windows} window(s), {self.pages} page(s); "
            f"new {self.new}, changed {self.changed}, unchanged {self.unchanged + self.stale}; "
            f"synced until {until}"
        )


@dataclass(frozen=True)
class Progress:
    """Told to the ``progress`` callback after every committed page."""

    window: Window
    window_index: int  # 0-based
    windows_total: int
    window_done: bool
    result: SyncResult = field(repr=False)


# --- versions ------------------------------------------------------------------------------------


def _plain(value: Any) -> str:
    return value.isoformat() if isinstance(value, datetime) else str(value)


def _tree(value: Any) -> Any:
    """``dataclasses.asdict`` without its deep copies: dataclasses become dicts of their
    fields, sequences lists, anything else stays itself (the JSON is the same)."""
    convert = _CONVERTERS.get(type(value))
    if convert is None:
        if is_dataclass(value) and not isinstance(value, type):
            convert = _CONVERTERS[type(value)] = _converter(type(value))
        elif isinstance(value, (list, tuple)):
            return [v if type(v) in _LEAVES else _tree(v) for v in value]
        elif isinstance(value, dict):
            return {k: v if type(v) in _LEAVES else _tree(v) for k, v in value.items()}
        else:
            return value
    return convert(value)


#: values that stay themselves in the tree (anything else is looked at by :func:`_tree`)
_LEAVES = frozenset({str, int, float, bool, type(None), Decimal, datetime, date})


def _converter(cls: type) -> Callable[[Any], dict[str, Any]]:
    """The function turning a ``cls`` into the dict of its fields, written out for them (each
    value stays itself when it is a leaf, else goes through :func:`_tree`)."""
    names = [f.name for f in fields(cls)]
    parts = ", ".join(f"{n!r}: (x if type(x := v.{n}) in leaves else tree(x))" for n in names)
    source = f"def convert(v):\n    return {{{parts}}}\n"
    scope: dict[str, Any] = {"leaves": _LEAVES, "tree": _tree}
    exec(compile(source, f"<tree of {cls.__qualname__}>", "exec"), scope)  # our own source
    return cast(Callable[[Any], dict[str, Any]], scope["convert"])


_CONVERTERS: dict[type, Callable[[Any], dict[str, Any]]] = {}


def digest(item: Order | Refund) -> str:
    """A digest of an object's content (stable across processes and databases)."""
    raw = json.dumps(_tree(item), sort_keys=True, default=_plain, ensure_ascii=False)
    return hashlib.sha256(raw.encode("utf-8")).hexdigest()


def platform_id(item: Order | Refund) -> tuple[str, str]:
    if isinstance(item, Order):
        return "order", item.order_id
    return "refund", item.refund_id


Verdict = Literal["new", "changed", "unchanged", "stale"]


def _insert_ignore(session: Session, model: Any, **values: Any) -> bool:
    """INSERT ... ON CONFLICT DO NOTHING; True if the row was inserted.

    No savepoint: on SQLite (pysqlite's own transaction handling) a SAVEPOINT opened before
    the first write starts, and its RELEASE commits, the transaction.
    """
    tenant_id = session_tenant(session)
    if tenant_id is None:
        raise SyncError("no tenant bound to the session")
    values = {"tenant_id": tenant_id, "updated_at": utcnow(), **values}
    if session.get_bind().dialect.name == "postgresql":
        stmt: Any = pg_insert(model).values(**values).on_conflict_do_nothing()
    else:
        stmt = sqlite_insert(model).values(**values).on_conflict_do_nothing()
    res = session.execute(stmt)
    return bool(getattr(res, "rowcount", 0))


def record_version(session: Session, account_id: int, item: Order | Refund) -> Verdict:
    """Record ``item``'s version; say whether it must be delivered (``new``/``changed``).

    ``stale``: an older version than the one recorded (never overwrites it).
    """
    kind, pid = platform_id(item)
    dg = digest(item)
    row = session.scalar(
        select(ChannelObject)
        .where(
            ChannelObject.account_id == account_id,
            ChannelObject.kind == kind,
            ChannelObject.platform_id == pid,
        )
        .execution_options(populate_existing=True)  # record_versions writes without the ORM
    )
    if row is None:
        if _insert_ignore(
            session,
            ChannelObject,
            account_id=account_id,
            kind=kind,
            platform_id=pid,
            modified_at=item.modified_at,
            digest=dg,
        ):
            return "new"
        # recorded meanwhile (by a concurrent run): compare with that version
        row = session.scalar(
            select(ChannelObject).where(
                ChannelObject.account_id == account_id,
                ChannelObject.kind == kind,
                ChannelObject.platform_id == pid,
            )
        )
        if row is None:  # pragma: no cover - the constraint said it exists
            raise SyncError(f"{kind} {pid}: version row vanished")
    if row.digest == dg:
        return "unchanged"
    if item.modified_at < row.modified_at:
        return "stale"
    row.modified_at = item.modified_at
    row.digest = dg
    row.updated_at = utcnow()
    return "changed"


#: Rows per statement when versions are recorded in bulk (well under SQLite's bound variables).
_CHUNK = 500
#: The recorded versions of a page's objects (built once: SQLAlchemy then reuses its cache key)
_STORED = select(
    ChannelObject.id, ChannelObject.platform_id, ChannelObject.modified_at, ChannelObject.digest
).where(
    ChannelObject.account_id == bindparam("account"),
    ChannelObject.kind == bindparam("kind"),
    ChannelObject.platform_id.in_(bindparam("pids", expanding=True)),
)
#: the same on the driver's cursor (SQLAlchemy's work per execution costs more than the
#: database's), its tenant named as a Core statement's
_STORED_D = Direct(_STORED.where(ChannelObject.tenant_id == TenantValue(bindparam("tid"))))


def record_versions(
    session: Session, account_id: int, items: Sequence[Order | Refund]
) -> list[Verdict]:
    """:func:`record_version` for each of ``items`` in turn (the verdicts in the same order),
    with one read, one insert and one update for the lot instead of up to three statements
    each: how the sync records a page.

    An object repeated in ``items`` is decided against the version recorded for its first
    copy, exactly as one call at a time would. One that a concurrent transaction recorded
    between the read and the insert is decided against that version.
    """
    verdicts: list[Verdict | None] = [None] * len(items)
    keys = [platform_id(item) for item in items]
    digests = [digest(item) for item in items]
    first: dict[tuple[str, str], int] = {}
    again: list[int] = []  # repeats and lost races: one at a time, after the rest
    for i, key in enumerate(keys):
        if key in first:
            again.append(i)
        else:
            first[key] = i
    stored: dict[tuple[str, str], tuple[int, datetime, str]] = {}
    by_kind: dict[str, list[str]] = {}
    for kind, pid in first:
        by_kind.setdefault(kind, []).append(pid)
    tid = session_tenant(session)
    if tid is None:
        raise SyncError("no tenant bound to the session")
    conn = flushed_connection(session)
    for kind, pids in sorted(by_kind.items()):
        pids.sort()
        for n in range(0, len(pids), _CHUNK):
            # the kind too: the unique index (tenant, account, kind, platform id) finds each
            # row, where the account's index alone would scan all its objects
            args = {"account": account_id, "kind": kind, "pids": pids[n : n + _CHUNK], "tid": tid}
            for oid, pid, modified_at, dg in _STORED_D.rows(conn, args):
                stored[(kind, pid)] = (oid, modified_at, dg)
    now = utcnow()
    changes: list[dict[str, Any]] = []
    fresh: list[int] = []
    for key, i in first.items():
        item, dg = items[i], digests[i]
        seen = stored.get(key)
        if seen is None:
            fresh.append(i)
        elif seen[2] == dg:
            verdicts[i] = "unchanged"
        elif item.modified_at < seen[1]:
            verdicts[i] = "stale"
        else:
            verdicts[i] = "changed"
            changes.append(
                {"oid": seen[0], "modified_at": item.modified_at, "digest": dg, "updated_at": now}
            )
    if changes:
        table = ChannelObject.__table__
        session.execute(
            update(table)  # type: ignore[arg-type]
            .where(
                table.c.id == bindparam("oid"),
                table.c.tenant_id == session_tenant(session),
            )
            .values(
                modified_at=bindparam("modified_at"),
                digest=bindparam("digest"),
                updated_at=bindparam("updated_at"),
            ),
            changes,
        )
    if fresh:
        inserted = _insert_ignore_many(
            session,
            [
                {
                    "account_id": account_id,
                    "kind": keys[i][0],
                    "platform_id": keys[i][1],
                    "modified_at": items[i].modified_at,
                    "digest": digests[i],
                    "updated_at": now,
                }
                for i in fresh
            ],
        )
        for i in fresh:
            if keys[i] in inserted:
                verdicts[i] = "new"
            else:
                again.append(i)  # recorded meanwhile by a concurrent run
    for i in sorted(again):
        verdicts[i] = record_version(session, account_id, items[i])
    return [v for v in verdicts if v is not None]


def _insert_ignore_many(session: Session, rows: list[dict[str, Any]]) -> set[tuple[str, str]]:
    """Insert version rows, skipping those already recorded; the (kind, platform id) of the
    rows inserted."""
    tenant_id = session_tenant(session)
    if tenant_id is None:
        raise SyncError("no tenant bound to the session")
    dialect = session.get_bind().dialect.name
    done: set[tuple[str, str]] = set()
    if len(rows) <= FEW_ROWS:  # one statement each, on the driver's cursor
        conn, one = session.connection(), _INSERT_VERSION[dialect]
        for row in rows:
            got = one.first(conn, {"tenant_id": tenant_id, **row})
            if got is not None:
                done.add((got[0], got[1]))
        return done
    stmt = _INSERT_VERSIONS[dialect]
    for n in range(0, len(rows), _CHUNK):
        chunk = [{"tenant_id": tenant_id, **row} for row in rows[n : n + _CHUNK]]
        done.update((kind, pid) for kind, pid in session.execute(stmt, chunk))
    return done


def _insert_versions(make: Any) -> Any:
    table: Any = ChannelObject.__table__
    return make(table).on_conflict_do_nothing().returning(table.c.kind, table.c.platform_id)


#: the insert of :func:`_insert_ignore_many` per dialect, built once (with many parameter sets
#: it is sent as multi-row statements, the rows already recorded skipped and not returned)
_INSERT_VERSIONS = {
    "postgresql": _insert_versions(pg_insert),
    "sqlite": _insert_versions(sqlite_insert),
}


def _insert_version(make: Any) -> Direct:
    table: Any = ChannelObject.__table__
    named = ("tenant_id", "account_id", "kind", "platform_id", "modified_at", "digest")
    return Direct(
        make(table)
        .values({k: bindparam(k) for k in (*named, "updated_at")})
        .on_conflict_do_nothing()
        .returning(table.c.kind, table.c.platform_id)
    )


#: the same for one row, on the driver's cursor (for a few rows)
_INSERT_VERSION = {
    "postgresql": _insert_version(pg_insert),
    "sqlite": _insert_version(sqlite_insert),
}


def deliver(session: Session, hooks: Any, tenant_id: int, account_id: int, item: Any) -> None:
    deliver_many(session, hooks, tenant_id, account_id, [item])


def deliver_many(
    session: Session, hooks: Any, tenant_id: int, account_id: int, items: Sequence[Any]
) -> None:
    """Hand new or changed objects to the tenant's hooks: the orders to ``erp_channel_orders``
    at once, then each order to ``erp_channel_order`` and each refund to ``erp_channel_refund``
    (a plugin implements one of the two order hooks)."""
    if hooks is None or not items:
        return
    orders = [item for item in items if isinstance(item, Order)]
    if orders:
        hooks.erp_channel_orders(
            session=session, tenant_id=tenant_id, account_id=account_id, orders=orders
        )
    for item in items:
        if isinstance(item, Order):
            hooks.erp_channel_order(
                session=session, tenant_id=tenant_id, account_id=account_id, order=item
            )
        else:
            hooks.erp_channel_refund(
                session=session, tenant_id=tenant_id, account_id=account_id, refund=item
            )


# --- windows ---------------------------------------------------------------------------------


def windows(start: datetime, end: datetime, size: timedelta) -> Iterator[Window]:
    """Contiguous windows ``[start, end)`` no longer than ``size``."""
    if size <= timedelta(0):
        raise ValueError("window size must be positive")
    pos = start
    while pos < end:
        nxt = min(pos + size, end)
        yield Window(start=pos, end=nxt)
        pos = nxt


def _count(start: datetime, end: datetime, size: timedelta) -> int:
    if end <= start:
        return 0
    return -(-(end - start) // size)


def _aware(value: datetime | None, what: str) -> datetime | None:
    if value is None:
        return None
    if value.tzinfo is None or value.utcoffset() is None:
        raise SyncError(f"{what} must be timezone-aware")
    return value.astimezone(UTC)


# --- the engine ----------------------------------------------------------------------------------


def _cursor_row(session: Session, account_id: int, stream: str, *, lock: bool) -> ChannelCursor:
    stmt = select(ChannelCursor).where(
        ChannelCursor.account_id == account_id, ChannelCursor.stream == stream
    )
    if lock and session.get_bind().dialect.name == "postgresql":
        stmt = stmt.with_for_update()
    row = session.scalar(stmt)
    if row is None:
        raise SyncError(f"channel account {account_id}: the {stream} cursor is gone")
    return row


def _ensure_cursor(session: Session, account_id: int, stream: str) -> None:
    _insert_ignore(session, ChannelCursor, account_id=account_id, stream=stream)


def _open_channel(
    session: Session,
    registry: PluginRegistry,
    settings: Settings,
    tenant_id: int,
    account_id: int,
) -> SalesChannel:

    account = session.get(ChannelAccount, account_id)
    if account is None:
        raise SyncError(f"no channel account {account_id} in this tenant")
    return _build_channel(session, registry, settings, tenant_id, account)


def _build_channel(
    session: Session,
    registry: PluginRegistry,
    settings: Settings,
    tenant_id: int,
    account: ChannelAccount,
    *,
    refused_token: str | None = None,
) -> SalesChannel:
    from erp_core.channels import service

    account_id = account.id
    if account.kind != "sales":
        raise SyncError(f"channel account {account_id} is a {account.kind} account, not a shop")
    if not account.active:
        raise SyncError(f"channel account {account_id} is inactive")
    if account.connector not in enabled_plugins(session, tenant_id):
        raise SyncError(
            f"connector {account.connector!r} of channel account {account_id} is not enabled "
            "for this tenant"
        )
    try:
        cls = service.connector_class(registry, account.connector)
        if refused_token is not None or service.needs_refresh(account):
            context = service.refresh_tokens(
                session, registry, settings, account, refused_token=refused_token
            )
        else:
            context = service.account_context(session, account, settings)
    except service.TokenRefreshError as exc:
        raise SyncAuthError(str(exc)) from None
    except AccountError as exc:
        raise SyncError(f"channel account {account_id}: {exc}") from None
    if not issubclass(cls, SalesChannel):
        raise SyncError(f"connector {account.connector!r} is not a sales channel")
    return cls(context)


def run(
    db: Database,
    registry: PluginRegistry,
    settings: Settings,
    tenant_id: int,
    account_id: int,
    stream: Stream = "orders",
    since: datetime | None = None,
    until: datetime | None = None,
    progress: Callable[[Progress], None] | None = None,
    *,
    window: timedelta | None = None,
    overlap: timedelta = DEFAULT_OVERLAP,
    safety_lag: timedelta = DEFAULT_SAFETY_LAG,
    throttle_retries: int = DEFAULT_THROTTLE_RETRIES,
    now: Callable[[], datetime] = utcnow,
    sleep: Callable[[float], None] = time.sleep,
    channel: SalesChannel | None = None,
) -> SyncResult:
    """Sync one stream of one sales account of ``tenant_id``; return what was done.

    Without ``since`` the run continues from the cursor (an unfinished window first, then from
    ``synced_until`` minus ``overlap``); with it, it fetches from ``since`` (a backfill).
    ``until`` (default, and at most: now minus ``safety_lag``) ends the run. ``window``
    shortens the connector's ``max_window``. Raises :class:`SyncError` (the cursor stands at
    the last committed page), :class:`SyncAuthError` when the platform refuses the account.
    """
    if stream not in STREAMS:
        raise SyncError(f"unknown stream {stream!r}; one of: {', '.join(STREAMS)}")
    since = _aware(since, "since")
    until = _aware(until, "until")
    result = SyncResult(account_id=account_id, stream=stream)

    with db.tenant_session(tenant_id) as s:
        chan = channel or _open_channel(s, registry, settings, tenant_id, account_id)
        _ensure_cursor(s, account_id, stream)
    with db.tenant_session(tenant_id) as s:
        cur = _cursor_row(s, account_id, stream, lock=False)
        synced_until = cur.synced_until
        pending: Cursor | None = None
        if (
            cur.window_start is not None
            and cur.window_end is not None
            and (since is None or since == cur.window_start)
        ):
            pending = Cursor(
                window=Window(start=cur.window_start, end=cur.window_end),
                token=cur.page_token or "",
            )
    result.synced_until = synced_until

    size = min(type(chan).max_window, window) if window else type(chan).max_window
    horizon = now().astimezone(UTC) - safety_lag
    end = min(until, horizon) if until else horizon
    if since is not None:
        start = since
    elif synced_until is not None:
        start = synced_until - overlap
    else:
        start = end - DEFAULT_FIRST_LOOKBACK
    if pending is not None:
        start = max(pending.window.end, start)
    fetch: Callable[[Cursor], Page[Any]] = (
        chan.fetch_orders if stream == "orders" else chan.fetch_refunds
    )

    plan: list[Cursor] = [] if pending is None else [pending]
    plan += [Cursor(window=w) for w in windows(start, end, size)]
    total = len(plan)
    if since is None and synced_until is None and pending is None:
        log.info("channel account %s %s: first sync from %s", account_id, stream, start)

    refreshed = channel is not None  # a channel handed in is used as it is

    def reopen() -> Callable[[Cursor], Page[Any]] | None:
        """After the platform refused the token: refresh it once, then fetch with the new one."""
        nonlocal refreshed, chan
        if refreshed:
            return None
        refreshed = True
        with db.tenant_session(tenant_id) as s:
            account = s.get(ChannelAccount, account_id)
            if account is None or account.refresh_token is None:
                return None
            refused = chan.context.access_token or ""
            chan = _build_channel(s, registry, settings, tenant_id, account, refused_token=refused)
        log.info(
            "channel account %s: access token refreshed after the platform refused it", account_id
        )
        return chan.fetch_orders if stream == "orders" else chan.fetch_refunds

    for index, first in enumerate(plan):
        cursor: Cursor | None = first
        while cursor is not None:
            try:
                page = _fetch(fetch, cursor, account_id, throttle_retries, sleep, result)
            except SyncAuthError:
                again = reopen()
                if again is None:
                    raise
                fetch = again
                page = _fetch(fetch, cursor, account_id, throttle_retries, sleep, result)
            nxt = page.next
            with db.tenant_session(tenant_id) as s:
                row = _cursor_row(s, account_id, stream, lock=True)
                hooks = tenant_hooks(s, tenant_id)
                counts = {"new": 0, "changed": 0, "unchanged": 0, "stale": 0}
                verdicts = record_versions(s, account_id, page.items)
                for verdict in verdicts:
                    counts[verdict] += 1
                deliver_many(
                    s,
                    hooks,
                    tenant_id,
                    account_id,
                    [
                        item
                        for item, verdict in zip(page.items, verdicts, strict=True)
                        if verdict in ("new", "changed")
                    ],
                )
                if nxt is None:
                    done_until = cursor.window.end
                    if row.synced_until is None or row.synced_until < done_until:
                        row.synced_until = done_until
                    row.window_start = row.window_end = None
                    row.page_token = None
                else:
                    row.window_start = nxt.window.start
                    row.window_end = nxt.window.end
                    row.page_token = nxt.token
                row.updated_at = utcnow()
                s.flush()
                new_until = row.synced_until
            # committed: only now does the result count it
            result.pages += 1
            result.new += counts["new"]
            result.changed += counts["changed"]
            result.unchanged += counts["unchanged"]
            result.stale += counts["stale"]
            result.synced_until = new_until
            if nxt is None:
                result.windows += 1
            if progress is not None:
                progress(Progress(cursor.window, index, total, nxt is None, result))
            cursor = nxt
    log.info("channel account %s %s", account_id, result.summary())
    return result


def _fetch(
    fetch: Callable[[Cursor], Page[Any]],
    cursor: Cursor,
    account_id: int,
    throttle_retries: int,
    sleep: Callable[[float], None],
    result: SyncResult,
) -> Page[Any]:
    attempt = 0
    while True:
        try:
            page = fetch(cursor)
        except ChannelAuthError as exc:
            raise SyncAuthError(
                f"channel account {account_id}: the platform refused the credentials or token "
                f"({exc}); update the account's secrets or authorize it again",
                result,
            ) from exc
        except ChannelThrottled as exc:
            attempt += 1
            if attempt > throttle_retries:
                raise SyncError(
                    f"channel account {account_id}: still throttled after {attempt} attempt(s) "
                    f"({exc}); the next run resumes from the last committed page",
                    result,
                ) from exc
            delay = exc.retry_after if exc.retry_after is not None else 2.0 ** (attempt - 1)
            delay = max(0.0, min(MAX_BACKOFF, float(delay)))
            log.warning(
                "channel account %s throttled; retrying in %.1f s (attempt %d)",
                account_id,
                delay,
                attempt,
            )
            sleep(delay)
            continue
        except ChannelError as exc:
            raise SyncError(
                f"channel account {account_id}: {type(exc).__name__}: {exc}; "
                "the next run resumes from the last committed page",
                result,
            ) from exc
        if not isinstance(page, Page):
            raise SyncError(f"channel account {account_id}: the connector returned no Page")
        if page.next is not None and page.next.window != cursor.window:
            raise SyncError(
                f"channel account {account_id}: the connector's next cursor left the window"
            )
        return page


# --- Celery: periodic sync of every active shop --------------------------------------------------

#: How often the scheduler syncs every active sales account (seconds).
SYNC_EVERY_SECONDS = 300.0
SYNC_TASK = "erp.channels.sync_account"
SYNC_DUE_TASK = "erp.channels.sync_due"


def due_accounts(db: Database) -> list[tuple[int, int]]:
    """(tenant id, account id) of every active sales account of an active tenant that has
    the account's connector enabled."""
    from erp_core.tenancy.models import Tenant, TenantPlugin

    with db.system_session() as s:
        rows = s.execute(
            select(ChannelAccount.tenant_id, ChannelAccount.id)
            .join(Tenant, Tenant.id == ChannelAccount.tenant_id)
            .join(
                TenantPlugin,
                (TenantPlugin.tenant_id == ChannelAccount.tenant_id)
                & (TenantPlugin.plugin == ChannelAccount.connector),
            )
            .where(
                ChannelAccount.kind == "sales",
                ChannelAccount.active.is_(True),
                Tenant.is_active.is_(True),
                TenantPlugin.enabled.is_(True),
            )
            .order_by(ChannelAccount.tenant_id, ChannelAccount.id)
        ).all()
    return [(int(t), int(a)) for t, a in rows]


def _register_tasks() -> tuple[Any, Any]:
    from celery import shared_task

    from erp_core.tasks.base import TaskContext, tenant_task

    @tenant_task(name=SYNC_TASK, plugin=None)
    def sync_account(ctx: TaskContext, account_id: int, stream: str) -> dict[str, Any]:
        """Sync one stream of one account. Runs of the same account and stream never overlap
        (the tenant task's run lock); a failed run leaves the cursor at its last committed
        page, so the next one resumes there."""
        from erp_core.tasks.runtime import runtime

        rt = runtime()
        try:
            result = run(
                rt.db, rt.registry, rt.settings, ctx.tenant_id, account_id, cast(Stream, stream)
            )
        except SyncAuthError as exc:
            log.error("%s", exc)
            return {"account_id": account_id, "stream": stream, "error": str(exc)}
        except SyncError as exc:
            log.warning("channel account %s %s sync stopped: %s", account_id, stream, exc)
            return {"account_id": account_id, "stream": stream, "error": str(exc)}
        return {
            "account_id": account_id,
            "stream": stream,
            "windows": result.windows,
            "pages": result.pages,
            "new": result.new,
            "changed": result.changed,
        }

    @shared_task(
        name=SYNC_DUE_TASK,
        bind=True,
        acks_late=True,
        reject_on_worker_lost=True,
        ignore_result=True,
    )
    def sync_due(self: Any) -> int:
        """Send one sync per stream of every due account (see :func:`due_accounts`)."""
        from erp_core.tasks.enqueue import enqueue
        from erp_core.tasks.runtime import runtime

        sent = 0
        for tenant_id, account_id in due_accounts(runtime().db):
            for stream in STREAMS:
                enqueue(self.app, SYNC_TASK, tenant_id, account_id, stream)
                sent += 1
        return sent

    return sync_account, sync_due


sync_account_task, sync_due_task = _register_tasks()
