"""The list component: one declaration gives a page with server-side search, filters, sort,
keyset pagination, column choice, bulk actions, CSV and Excel export and inline editing.

A plugin declares a :class:`ListView` over a SQLAlchemy ``select`` and mounts it::

    view = ListView(
        name="orders",
        title=N_("Orders"),
        query=select(Order),
        id_expr=Order.id,
        columns=(
            Column(key="number", title=N_("Number"), expr=Order.number, sortable=True),
            Column(key="status", title=N_("Status"), expr=Order.status),
            Column(key="created_at", title=N_("Created"), expr=Order.id, sortable=True),
        ),
        search=(Order.number, Order.buyer),
        filters=(Filter(key="status", title=N_("Status"), expr=Order.status,
                        choices=(("new", N_("New")), ("paid", N_("Paid")))),),
        sort="-created_at",
    )
    mount_list(router, "/orders", view, read="oms.order.read")

Pages never count rows (``count(*)`` over millions of rows is what makes other ERPs' lists slow):
they fetch one row more than they show to know whether there is a next page, and page by
*keyset* (the sort value and the id of the last row shown), which stays fast at any depth when
the sort expression is indexed together with the id. Sortable expressions must not be NULL.
"""

from __future__ import annotations

import base64
import csv
import io
import json
import os
import tempfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from decimal import Decimal
from typing import Any, Literal
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import FileResponse, Response, StreamingResponse
from sqlalchemy import Date, String, bindparam, cast, or_, select, tuple_
from sqlalchemy.orm import Session
from sqlalchemy.sql import Select
from starlette.background import BackgroundTask

from erp_core.auth.deps import DbSession, require
from erp_core.auth.principal import Principal
from erp_core.i18n import Message, translate
from erp_core.web.flash import redirect
from erp_core.web.models import ListPreference

RESERVED = frozenset({"q", "sort", "after", "before", "cols", "size", "export"})
MAX_PAGE_SIZE = 200
EXPORT_BATCH = 1000

Choices = Sequence[tuple[str, str]] | Callable[[Session], Sequence[tuple[str, str]]]


class FieldError(ValueError):
    """A value refused by an inline edit or a form, with the message shown next to it."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


@dataclass(frozen=True, slots=True, kw_only=True)
class Edit:
    """Inline editing of one column: ``save(session, principal, row_id, value)`` applies the
    new value (raise an exception with a translatable message to refuse it); the caller
    commits. ``permission`` is checked on the server for both showing and saving."""

    save: Callable[[Session, Principal, int, str], object]
    permission: str
    kind: Literal["text", "select"] = "text"
    choices: Choices | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Column:
    """A column: ``key`` names it in URLs; ``expr`` is the SQL expression it sorts by (and
    the value, unless ``value`` reads it from the row); ``title`` is a msgid."""

    key: str
    title: str
    expr: Any = None
    sortable: bool = False
    visible: bool = True
    value: Callable[[Any], Any] | None = None
    link: Callable[[Any], str] | None = None
    edit: Edit | None = None
    export: bool = True

    def get(self, row: Any) -> Any:
        if self.value is not None:
            return self.value(row)
        return getattr(row, self.key, None)


@dataclass(frozen=True, slots=True, kw_only=True)
class Filter:
    """A filter shown above the list: ``choice`` (a select), ``text`` (exact match), ``bool``,
    or ``date_from`` / ``date_to`` (a day, inclusive: in the tenant's time zone for a time,
    as it is for a ``Date`` column). ``where(value)``, when given, builds the SQL condition
    instead of comparing ``expr`` (e.g. ``Entry.id.in_(select(...))`` to filter on a child
    table); it gets the raw text of a ``choice`` or ``text`` filter, the day of a date one."""

    key: str
    title: str
    expr: Any = None
    kind: Literal["choice", "text", "bool", "date_from", "date_to"] = "choice"
    choices: Choices | None = None
    where: Callable[[Any], Any] | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class BulkAction:
    """An action on the selected rows: ``run(session, principal, ids)`` returns the message
    to show (the caller commits). ``permission`` is checked on the server."""

    key: str
    title: str
    permission: str
    run: Callable[[Session, Principal, list[int]], object]
    danger: bool = False


def _resolve_choices(choices: Choices | None, session: Session) -> list[tuple[str, str]]:
    if choices is None:
        return []
    if callable(choices):
        return list(choices(session))
    return list(choices)


@dataclass(frozen=True, kw_only=True)
class ListView:
    """A list over ``query`` (a ``select`` of one ORM entity or of labelled columns whose rows
    have an ``id``), ordered by a column and ``id_expr`` (unique) as tie-breaker."""

    name: str
    title: str
    query: Any  # a sqlalchemy Select
    id_expr: Any
    columns: tuple[Column, ...]
    search: tuple[Any, ...] = ()
    filters: tuple[Filter, ...] = ()
    sort: str = "-id"
    page_size: int = 50
    bulk_actions: tuple[BulkAction, ...] = ()
    export: bool = True
    #: The path the list is mounted at (set by :func:`mount_list`).
    path: str = ""

    def __post_init__(self) -> None:
        keys = [c.key for c in self.columns] + [f.key for f in self.filters]
        clash = sorted(RESERVED & set(keys))
        if clash:
            raise ValueError(f"list {self.name}: reserved keys used: {', '.join(clash)}")
        if len(set(keys)) != len(keys):
            raise ValueError(f"list {self.name}: column and filter keys must be unique")
        if self.sort.lstrip("-") not in self.sortable_keys():
            raise ValueError(f"list {self.name}: default sort {self.sort!r} is not sortable")

    def sortable_keys(self) -> set[str]:
        return {c.key for c in self.columns if c.sortable and c.expr is not None}

    def column(self, key: str) -> Column:
        for c in self.columns:
            if c.key == key:
                return c
        raise KeyError(key)

    # -- parameters ---------------------------------------------------------------------

    def params(self, query: Any, saved_cols: Sequence[str] = ()) -> ListParams:
        """Parse a request's query string (a Starlette ``QueryParams`` or a dict);
        ``saved_cols`` are the columns the user chose to remember, used when the query string
        names none."""

        def one(name: str) -> str:
            v = query.get(name)
            return v.strip()[:200] if isinstance(v, str) else ""

        sort = one("sort") or self.sort
        if sort.lstrip("-") not in self.sortable_keys():
            sort = self.sort
        raw_cols: list[str] = []
        if hasattr(query, "getlist"):
            for v in query.getlist("cols"):
                raw_cols.extend(v.split(","))
        elif query.get("cols"):
            raw_cols = str(query["cols"]).split(",")
        known = [c.key for c in self.columns]
        cols = tuple(k for k in known if k in {c.strip() for c in raw_cols})
        if not cols and not raw_cols:
            cols = tuple(k for k in known if k in set(saved_cols))
        try:
            size = int(one("size") or self.page_size)
        except ValueError:
            size = self.page_size
        filters = {f.key: one(f.key) for f in self.filters if one(f.key)}
        return ListParams(
            q=one("q"),
            sort=sort,
            after=one("after"),
            before=one("before") if not one("after") else "",
            cols=cols,
            size=max(1, min(size, MAX_PAGE_SIZE)),
            filters=filters,
        )

    # -- querying -----------------------------------------------------------------------

    def _sort(self, params: ListParams) -> tuple[Any, bool]:
        key = params.sort.lstrip("-")
        return self.column(key).expr, params.sort.startswith("-")

    def filtered(self, params: ListParams, zone: tzinfo = UTC) -> Select[Any]:
        q = self.query
        if params.q and self.search:
            like = "%" + params.q.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
            like += "%"
            q = q.where(or_(*(cast(e, String).ilike(like, escape="\\") for e in self.search)))
        for f in self.filters:
            raw = params.filters.get(f.key)
            if not raw:
                continue
            cond = _filter_condition(f, raw, zone)
            if cond is not None:
                q = q.where(cond)
        return q

    def _keyset(
        self, q: Select[Any], sort_expr: Any, desc: bool, cursor: list[Any], fwd: bool
    ) -> Select[Any]:
        value, last_id = cursor
        greater = fwd != desc  # moving towards larger values
        if sort_expr is self.id_expr:
            cond = self.id_expr > last_id if greater else self.id_expr < last_id
        else:
            left = tuple_(sort_expr, self.id_expr)
            right = tuple_(
                bindparam(None, value, type_=sort_expr.type),
                bindparam(None, last_id, type_=self.id_expr.type),
            )
            cond = left > right if greater else left < right
        return q.where(cond)

    def _ordered(self, q: Select[Any], sort_expr: Any, desc: bool, reverse: bool) -> Select[Any]:
        down = desc != reverse
        keys = [sort_expr] if sort_expr is self.id_expr else [sort_expr, self.id_expr]
        return q.order_by(*(k.desc() if down else k.asc() for k in keys))

    def fetch(self, session: Session, params: ListParams, zone: tzinfo = UTC) -> ListPage:
        """One page of rows (``params.size`` at most) and the cursors around it."""
        sort_expr, desc = self._sort(params)
        q = self.filtered(params, zone)
        cursor_raw = params.after or params.before
        cursor = decode_cursor(cursor_raw) if cursor_raw else None
        forward = not params.before
        if cursor is not None:
            q = self._keyset(q, sort_expr, desc, cursor, forward)
        q = self._ordered(q, sort_expr, desc, reverse=not forward).limit(params.size + 1)
        rows = [_obj(r) for r in session.execute(q)]
        more = len(rows) > params.size
        rows = rows[: params.size]
        if not forward:
            rows.reverse()
        key = params.sort.lstrip("-")
        col = self.column(key)

        def cur(row: Any) -> str:
            return encode_cursor([col.get(row), self.row_id(row)])

        has_next = more if forward else cursor is not None
        has_prev = (cursor is not None) if forward else more
        return ListPage(
            view=self,
            params=params,
            rows=rows,
            next_cursor=cur(rows[-1]) if rows and has_next else None,
            prev_cursor=cur(rows[0]) if rows and has_prev else None,
        )

    def row(self, session: Session, row_id: int) -> Any | None:
        found = session.execute(self.query.where(self.id_expr == row_id)).first()
        return _obj(found) if found is not None else None

    @staticmethod
    def row_id(row: Any) -> int:
        return int(row.id)

    def iter_all(
        self, open_session: Callable[[], Session], params: ListParams, zone: tzinfo = UTC
    ) -> Iterator[Any]:
        """Every row matching ``params``, in order, fetched in batches by keyset, each batch
        in a short session of its own (an export of any size holds one batch in memory)."""
        p = replace(params, after="", before="", size=EXPORT_BATCH)
        while True:
            with open_session() as s:
                page = self.fetch(s, p, zone)
            yield from page.rows
            if page.next_cursor is None:
                return
            p = replace(p, after=page.next_cursor)


def _obj(row: Any) -> Any:
    """An ORM entity for a select of one entity, else the row (attribute access by label)."""
    if len(row) == 1 and hasattr(row[0], "__table__"):
        return row[0]
    return row


def _day(raw: str) -> date | None:
    try:
        return date.fromisoformat(raw)
    except ValueError:
        return None


def _filter_condition(f: Filter, raw: str, zone: tzinfo) -> Any:
    if f.kind in ("choice", "text"):
        return f.where(raw) if f.where is not None else f.expr == raw
    if f.kind == "bool":
        if raw not in ("1", "0"):
            return None
        return f.expr.is_(raw == "1")
    day = _day(raw)
    if day is None:
        return None
    if f.where is not None:
        return f.where(day)
    if isinstance(getattr(f.expr, "type", None), Date):  # a calendar day, no time zone
        return f.expr >= day if f.kind == "date_from" else f.expr <= day
    start = datetime.combine(day, time(), tzinfo=zone).astimezone(UTC)
    if f.kind == "date_from":
        return f.expr >= start
    return f.expr < start + timedelta(days=1)


@dataclass(frozen=True, slots=True)
class ListParams:
    q: str = ""
    sort: str = ""
    after: str = ""
    before: str = ""
    cols: tuple[str, ...] = ()
    size: int = 50
    filters: dict[str, str] = field(default_factory=dict)

    def query(self, **changes: Any) -> dict[str, Any]:
        """These parameters (with ``changes``) as query-string items; empty ones left out."""
        data: dict[str, Any] = {
            "q": self.q,
            "sort": self.sort,
            "after": self.after,
            "before": self.before,
            "cols": ",".join(self.cols),
            "size": str(self.size),
            **self.filters,
        }
        data.update(changes)
        return {k: v for k, v in data.items() if v not in ("", None)}


@dataclass
class ListPage:
    view: ListView
    params: ListParams
    rows: list[Any]
    next_cursor: str | None
    prev_cursor: str | None

    @property
    def columns(self) -> list[Column]:
        chosen = set(self.params.cols)
        if chosen:
            return [c for c in self.view.columns if c.key in chosen]
        return [c for c in self.view.columns if c.visible]

    def url(self, **changes: Any) -> str:
        """The list's URL with these parameters and ``changes`` (a new search, sort or filter
        starts again from the first page)."""
        if not {"after", "before"} & set(changes):
            changes.setdefault("after", "")
            changes.setdefault("before", "")
        qs = urlencode(self.params.query(**changes))
        return self.view.path + (f"?{qs}" if qs else "")

    def sort_url(self, key: str) -> str:
        current = self.params.sort
        new = f"-{key}" if current == key else key
        return self.url(sort=new)

    def sort_state(self, key: str) -> str:
        if self.params.sort == key:
            return "ascending"
        if self.params.sort == f"-{key}":
            return "descending"
        return "none"

    def export_url(self, fmt: str) -> str:
        qs = urlencode(self.params.query(after="", before="", size=""))
        return f"{self.view.path}/export.{fmt}" + (f"?{qs}" if qs else "")

    @property
    def next_url(self) -> str | None:
        return self.url(after=self.next_cursor, before="") if self.next_cursor else None

    @property
    def prev_url(self) -> str | None:
        return self.url(before=self.prev_cursor, after="") if self.prev_cursor else None

    @property
    def filtering(self) -> bool:
        return bool(self.params.q or self.params.filters)


# --- cursors -------------------------------------------------------------------------------


def _enc(v: Any) -> Any:
    if isinstance(v, datetime):
        return {"dt": v.isoformat()}
    if isinstance(v, date):
        return {"d": v.isoformat()}
    if isinstance(v, Decimal):
        return {"dec": str(v)}
    return v


def _dec(v: Any) -> Any:
    if isinstance(v, dict):
        if "dt" in v:
            return datetime.fromisoformat(v["dt"])
        if "d" in v:
            return date.fromisoformat(v["d"])
        if "dec" in v:
            return Decimal(v["dec"])
        raise ValueError("unknown cursor value")
    return v


def encode_cursor(values: list[Any]) -> str:
    raw = json.dumps([_enc(v) for v in values], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(token: str) -> list[Any] | None:
    """The cursor's values, or None for a cursor that is not one of ours (ignored: page 1)."""
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        data = json.loads(raw)
        if not isinstance(data, list) or len(data) != 2 or not isinstance(data[1], int):
            return None
        return [_dec(v) for v in data]
    except (ValueError, TypeError, json.JSONDecodeError):
        return None


# --- export --------------------------------------------------------------------------------


def _export_columns(page_cols: Sequence[Column]) -> list[Column]:
    return [c for c in page_cols if c.export]


def export_csv(rows: Iterator[Any], columns: Sequence[Column], filename: str) -> Response:
    """A streamed CSV file (UTF-8 with a byte-order mark, so that Excel reads Chinese)."""
    from erp_core.web.templating import format_value

    cols = _export_columns(columns)
    header = [translate(c.title) for c in cols]
    translations = _current_translations()
    zone = _current_zone()

    def chunks() -> Iterator[str]:
        # runs in worker threads, one chunk at a time: language and zone are passed, not set
        buf = io.StringIO()
        writer = csv.writer(buf)
        buf.write("\ufeff")
        writer.writerow(header)
        for n, row in enumerate(rows, start=1):
            writer.writerow([format_value(c.get(row), zone, translations) for c in cols])
            if n % 500 == 0:
                yield buf.getvalue()
                buf.seek(0)
                buf.truncate()
        yield buf.getvalue()

    return StreamingResponse(
        chunks(),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{filename}.csv"'},
    )


def export_xlsx(rows: Iterator[Any], columns: Sequence[Column], filename: str) -> Response:
    """An Excel workbook written row by row to a temporary file (constant memory)."""
    import xlsxwriter

    from erp_core.web.templating import format_value

    cols = _export_columns(columns)
    zone = _current_zone()
    fd, path = tempfile.mkstemp(prefix="erp-export-", suffix=".xlsx")
    os.close(fd)
    try:
        wb = xlsxwriter.Workbook(path, {"constant_memory": True, "in_memory": False})
        ws = wb.add_worksheet(filename[:31])
        bold = wb.add_format({"bold": True})
        when = wb.add_format({"num_format": "yyyy-mm-dd hh:mm:ss"})
        for i, c in enumerate(cols):
            ws.write_string(0, i, translate(c.title), bold)
            ws.set_column(i, i, 18)
        for r, row in enumerate(rows, start=1):
            for i, c in enumerate(cols):
                v = c.get(row)
                if v is None:
                    continue
                if isinstance(v, bool):
                    ws.write_boolean(r, i, v)
                elif isinstance(v, datetime):
                    aware = v if v.tzinfo else v.replace(tzinfo=UTC)
                    ws.write_datetime(r, i, aware.astimezone(zone).replace(tzinfo=None), when)
                elif isinstance(v, int | float | Decimal):
                    ws.write_number(r, i, float(v))
                else:
                    ws.write_string(r, i, format_value(v))
        wb.close()
    except BaseException:
        os.unlink(path)
        raise
    return FileResponse(
        path,
        media_type="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        filename=f"{filename}.xlsx",
        background=BackgroundTask(os.unlink, path),
    )


def _current_translations() -> Any:
    from erp_core import i18n

    return i18n.active()


def _current_zone() -> tzinfo:
    from erp_core.web import templating

    return templating._zone.get()


# --- routes --------------------------------------------------------------------------------


def list_context(
    view: ListView, request: Request, db: Session, principal: Principal
) -> dict[str, Any]:
    """What ``components/list_page.html`` (and the list macros) need: the page of rows for
    the request's query string, filter choices, and the bulk actions and editable columns the
    principal may use."""
    from erp_core.web.shell import tenant_prefs

    saved = saved_columns(db, principal, view)
    page = view.fetch(db, view.params(request.query_params, saved), tenant_prefs(request, db)[1])
    return {
        "view": view,
        "page": page,
        "saved_cols": saved,
        "can_save_cols": principal.via == "session",
        "filter_choices": {f.key: _resolve_choices(f.choices, db) for f in view.filters},
        "bulk_actions": [a for a in view.bulk_actions if principal.can(a.permission)],
        "editable": {c.key for c in view.columns if c.edit and principal.can(c.edit.permission)},
    }


def saved_columns(db: Session, principal: Principal, view: ListView) -> tuple[str, ...]:
    """The columns ``principal``'s user chose to remember for ``view`` (empty: none). Kept
    by the list's path, which no two lists share (their names may collide across plugins)."""
    if principal.via != "session":
        return ()
    raw = db.scalar(
        select(ListPreference.columns).where(
            ListPreference.user_id == principal.user_id, ListPreference.list_name == view.path
        )
    )
    return tuple(raw.split(",")) if raw else ()


def save_columns(db: Session, principal: Principal, view: ListView, cols: Sequence[str]) -> None:
    """Remember ``cols`` (keys of ``view``'s columns, unknown ones dropped) as ``principal``'s
    columns for ``view``; no columns forgets the choice (the list's defaults apply again)."""
    known = [c.key for c in view.columns]
    keep = [k for k in known if k in set(cols)]
    pref = db.scalar(
        select(ListPreference).where(
            ListPreference.user_id == principal.user_id, ListPreference.list_name == view.path
        )
    )
    if not keep:
        if pref is not None:
            db.delete(pref)
        return
    if pref is None:
        db.add(
            ListPreference(user_id=principal.user_id, list_name=view.path, columns=",".join(keep))
        )
    else:
        pref.columns = ",".join(keep)
        pref.updated_at = datetime.now(UTC)


def _bind(view: ListView, request: Request, suffix: str = "") -> ListView:
    """The view with the URL it is served at in this request (a router's mount prefix is
    known only from the request)."""
    p = request.url.path
    base = p[: -len(suffix)] if suffix and p.endswith(suffix) else p
    return view if base == view.path else replace(view, path=base)


def _back(view: ListView, form: Any) -> str:
    """The list URL a form came from (``back``), or the list itself: never another page."""
    back = str(form.get("back") or view.path)
    if back != view.path and not back.startswith(view.path + "?"):
        back = view.path
    return back


def mount_list(
    router: APIRouter,
    path: str,
    view: ListView,
    *,
    read: str,
    template: str = "components/list_page.html",
    context: Callable[[Request, Session], dict[str, Any]] | None = None,
) -> ListView:
    """Add the list's routes to ``router`` at ``path`` and return the view. Every route
    requires ``read``; bulk actions and inline edits require their own permissions as well.

    - ``GET path``: the page (or, for htmx, only its ``list`` block);
    - ``GET path/export.csv`` and ``path/export.xlsx``: every matching row;
    - ``POST path/bulk``: form fields ``action``, ``ids`` and ``back``;
    - ``GET path/{id}/edit/{key}``, ``POST`` the same, ``GET path/{id}/cell/{key}``: inline edit.
    """
    view = replace(view, path=(router.prefix or "") + path)
    reader = Depends(require(read))

    def page_ctx(
        v: ListView, request: Request, db: Session, principal: Principal
    ) -> dict[str, Any]:
        ctx = list_context(v, request, db, principal)
        if context is not None:
            ctx.update(context(request, db))
        return ctx

    @router.get(path, name=f"list-{view.name}")
    def list_page(request: Request, db: DbSession, principal: Principal = reader) -> Response:
        from erp_core.web.templating import render

        v = _bind(view, request)
        return render(request, template, page_ctx(v, request, db, principal), block="list")

    def _export(request: Request, db: Session, principal: Principal, fmt: str) -> Response:
        from erp_core.web.shell import tenant_prefs

        v = _bind(view, request, f"/export.{fmt}")
        if not v.export:
            raise HTTPException(404, "this list cannot be exported")
        locale, zone = tenant_prefs(request, db)
        params = v.params(request.query_params)
        database = request.app.state.db
        rows = v.iter_all(lambda: database.session(principal.tenant_id), params, zone)
        columns = ListPage(v, params, [], None, None).columns
        name = f"{v.name}-{datetime.now(UTC):%Y%m%d-%H%M%S}"
        with _activated(request, locale, zone):
            if fmt == "csv":
                return export_csv(rows, columns, name)
            return export_xlsx(rows, columns, name)

    @router.get(path + "/export.csv", name=f"list-{view.name}-csv")
    def export_csv_route(
        request: Request, db: DbSession, principal: Principal = reader
    ) -> Response:
        return _export(request, db, principal, "csv")

    @router.get(path + "/export.xlsx", name=f"list-{view.name}-xlsx")
    def export_xlsx_route(
        request: Request, db: DbSession, principal: Principal = reader
    ) -> Response:
        return _export(request, db, principal, "xlsx")

    @router.post(path + "/columns", name=f"list-{view.name}-columns")
    async def columns(request: Request, db: DbSession, principal: Principal = reader) -> Response:
        from starlette.concurrency import run_in_threadpool

        form = await request.form()
        return await run_in_threadpool(_columns, request, db, principal, form)

    def _columns(request: Request, db: Session, principal: Principal, form: Any) -> Response:
        v = _bind(view, request, "/columns")
        if principal.via != "session":
            raise HTTPException(403, Message("only people signed in can keep a column choice"))
        back = _back(v, form)
        if form.get("forget"):
            save_columns(db, principal, v, ())
            message = Message("The list shows its default columns again.")
        else:
            cols = [str(c) for raw in form.getlist("cols") for c in str(raw).split(",")]
            save_columns(db, principal, v, cols)
            message = Message("These columns are kept for you.")
        db.commit()
        return redirect(request, back, message)

    @router.post(path + "/bulk", name=f"list-{view.name}-bulk")
    async def bulk(request: Request, db: DbSession, principal: Principal = reader) -> Response:
        from starlette.concurrency import run_in_threadpool

        form = await request.form()
        return await run_in_threadpool(_bulk, request, db, principal, form)

    def _bulk(request: Request, db: Session, principal: Principal, form: Any) -> Response:
        from erp_core.web.templating import is_htmx, render

        v = _bind(view, request, "/bulk")
        action = next((a for a in v.bulk_actions if a.key == form.get("action")), None)
        if action is None:
            raise HTTPException(422, Message("choose an action"))
        if not principal.can(action.permission):
            raise HTTPException(
                403, Message("permission %(name)s is required", name=repr(action.permission))
            )
        ids: list[int] = []
        for raw in form.getlist("ids"):
            try:
                ids.append(int(raw))
            except (TypeError, ValueError):
                continue
        back = _back(v, form)
        message: object
        if not ids:
            message, level = Message("select at least one row first"), "warning"
        else:
            try:
                message = action.run(db, principal, ids)
                db.commit()
                level = "success"
            except ValueError as exc:
                db.rollback()
                message, level = exc, "error"
        if is_htmx(request):
            # show the page the rows were selected on, with the action's outcome
            request.scope["query_string"] = back.partition("?")[2].encode()
            request.__dict__.pop("_query_params", None)
            return render(
                request,
                template,
                page_ctx(v, request, db, principal),
                block="list",
                messages=[(level, message)],
            )
        return redirect(request, back, message, level)  # type: ignore[arg-type]

    def _editable(v: ListView, principal: Principal, key: str) -> Column:
        try:
            col = v.column(key)
        except KeyError:
            raise HTTPException(404, "Not Found") from None
        if col.edit is None:
            raise HTTPException(404, "Not Found")
        if not principal.can(col.edit.permission):
            raise HTTPException(
                403, Message("permission %(name)s is required", name=repr(col.edit.permission))
            )
        return col

    def _cell(
        v: ListView,
        request: Request,
        db: Session,
        principal: Principal,
        row_id: int,
        key: str,
        *,
        editing: bool,
        value: str | None = None,
        error: object | None = None,
        status: int = 200,
        messages: Sequence[tuple[str, object]] = (),
    ) -> Response:
        from erp_core.web.templating import render

        col = _editable(v, principal, key)
        row = v.row(db, row_id)
        if row is None:
            raise HTTPException(404, "Not Found")
        assert col.edit is not None
        if isinstance(error, BaseException):
            error = error.args[0] if error.args else type(error).__name__
        ctx = {
            "view": v,
            "col": col,
            "row": row,
            "row_id": row_id,
            "editing": editing,
            "value": value if value is not None else _raw(col.get(row)),
            "error": error,
            "choices": _resolve_choices(col.edit.choices, db),
        }
        return render(
            request,
            "components/list_cell.html",
            ctx,
            block="cell",
            status_code=status,
            messages=messages,
        )

    @router.get(path + "/{row_id}/edit/{key}", name=f"list-{view.name}-edit")
    def edit_cell(
        row_id: int, key: str, request: Request, db: DbSession, principal: Principal = reader
    ) -> Response:
        v = _bind(view, request, f"/{row_id}/edit/{key}")
        return _cell(v, request, db, principal, row_id, key, editing=True)

    @router.get(path + "/{row_id}/cell/{key}", name=f"list-{view.name}-cell")
    def show_cell(
        row_id: int, key: str, request: Request, db: DbSession, principal: Principal = reader
    ) -> Response:
        v = _bind(view, request, f"/{row_id}/cell/{key}")
        return _cell(v, request, db, principal, row_id, key, editing=False)

    @router.post(path + "/{row_id}/edit/{key}", name=f"list-{view.name}-save")
    async def save_cell(
        row_id: int, key: str, request: Request, db: DbSession, principal: Principal = reader
    ) -> Response:
        from starlette.concurrency import run_in_threadpool

        form = await request.form()
        value = str(form.get("value") or "")[:1000]
        return await run_in_threadpool(_save, request, db, principal, row_id, key, value)

    def _save(
        request: Request, db: Session, principal: Principal, row_id: int, key: str, value: str
    ) -> Response:
        from erp_core.web.templating import is_htmx

        v = _bind(view, request, f"/{row_id}/edit/{key}")
        col = _editable(v, principal, key)
        assert col.edit is not None
        if v.row(db, row_id) is None:
            raise HTTPException(404, "Not Found")
        try:
            col.edit.save(db, principal, row_id, value)
            db.commit()
        except ValueError as exc:
            db.rollback()
            return _cell(
                v,
                request,
                db,
                principal,
                row_id,
                key,
                editing=True,
                value=value,
                error=exc,
                status=422,
            )
        if not is_htmx(request):
            return redirect(request, v.path, Message("Saved."))
        return _cell(
            v,
            request,
            db,
            principal,
            row_id,
            key,
            editing=False,
            messages=[("success", Message("Saved."))],
        )

    return view


def _raw(v: Any) -> str:
    if v is None:
        return ""
    return str(v)


class _activated:
    """Translations and time zone of the request, for exports written outside ``render``."""

    def __init__(self, request: Request, locale: str, zone: tzinfo) -> None:
        self.request = request
        self.locale = locale
        self.zone = zone

    def __enter__(self) -> None:
        from erp_core import i18n
        from erp_core.web import templating

        ui = self.request.app.state.templates
        self._t = i18n.activate(ui.catalogs.for_locale(self.locale))
        self._z = templating._zone.set(self.zone)

    def __exit__(self, *exc: object) -> None:
        from erp_core import i18n
        from erp_core.web import templating

        templating._zone.reset(self._z)
        i18n.deactivate(self._t)


__all__ = [
    "BulkAction",
    "Column",
    "Edit",
    "FieldError",
    "Filter",
    "ListPage",
    "ListParams",
    "ListView",
    "list_context",
    "mount_list",
]
