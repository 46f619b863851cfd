"""Errors as RFC 9457 problem documents (``application/problem+json``)."""

from __future__ import annotations

import json
import logging
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from sqlalchemy.exc import DataError, StatementError
from starlette.exceptions import HTTPException as StarletteHTTPException

from erp_core.auth.security import PasswordPolicyError
from erp_core.auth.service import AuthError, LoginLocked
from erp_core.channels.errors import AccountError
from erp_core.inventory.errors import InventoryError
from erp_core.ledger.types import LedgerError
from erp_core.plugins.registry import DependencyError
from erp_core.tenancy.service import TenantError

log = logging.getLogger(__name__)

PROBLEM = "application/problem+json"

#: Errors raised when request data reaches the database but cannot be stored: an integer or
#: date out of range (``OverflowError``, raw from SQLite or wrapped by SQLAlchemy), text with
#: unpaired surrogates (``UnicodeEncodeError``), and what PostgreSQL refuses (``DataError``:
#: NUL characters, too long, out of range).
UNSTORABLE: tuple[type[Exception], ...] = (OverflowError, UnicodeEncodeError, DataError)


def is_unstorable(exc: BaseException) -> bool:
    return isinstance(exc, UNSTORABLE) or (
        isinstance(exc, StatementError) and isinstance(exc.orig, UNSTORABLE)
    )


class ProblemResponse(JSONResponse):
    """A problem document, ASCII-escaped so that anything echoed from the request (a field
    name with an unpaired surrogate, say) can always be encoded."""

    media_type = PROBLEM

    def render(self, content: Any) -> bytes:
        return json.dumps(content, ensure_ascii=True, allow_nan=False).encode("ascii")


def problem(
    status: int,
    detail: str,
    *,
    title: str | None = None,
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> JSONResponse:
    body: dict[str, Any] = {
        "type": "about:blank",
        "title": title or HTTPStatus(status).phrase,
        "status": status,
        "detail": detail,
    }
    body.update(extra)
    return ProblemResponse(body, status_code=status, headers=headers)


def _wants_html(request: Request) -> bool:
    if request.url.path.startswith("/api/") or request.url.path.startswith("/hooks/"):
        return False
    return "text/html" in request.headers.get("accept", "")


def _html(
    request: Request, status: int, detail: str, headers: dict[str, str] | None = None
) -> Response:
    from erp_core.web.templating import render_error

    return render_error(request, status, detail, headers=headers)


def install(app: FastAPI) -> None:
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        detail = exc.detail if isinstance(exc.detail, str) else HTTPStatus(exc.status_code).phrase
        headers = getattr(exc, "headers", None)
        if _wants_html(request):
            return _html(request, exc.status_code, detail, headers)
        return problem(exc.status_code, detail, headers=headers)

    async def validation_error(request: Request, exc: RequestValidationError) -> Response:
        errors = [
            {
                "loc": [str(p) for p in e.get("loc", ())],
                "msg": e.get("msg", ""),
                "type": e.get("type", ""),
            }
            for e in exc.errors()
        ]
        first = errors[0] if errors else {"loc": [], "msg": "invalid request"}
        where = ".".join(x for x in first["loc"] if x not in ("body", "query", "path"))
        detail = f"{where}: {first['msg']}" if where else str(first["msg"])
        if _wants_html(request):
            return _html(request, 422, detail)
        return problem(422, detail, title="Invalid request", errors=errors)

    async def domain_error(request: Request, exc: Exception) -> Response:
        status = 409 if isinstance(exc, DependencyError) else 422
        if _wants_html(request):
            return _html(request, status, str(exc))
        if status == 422:
            errors = [{"loc": [], "msg": str(exc), "type": type(exc).__name__}]
            return problem(status, str(exc), errors=errors)
        return problem(status, str(exc))

    async def unstorable(request: Request, exc: Exception) -> Response:
        log.warning(
            "request data refused on %s %s: %s: %s",
            request.method,
            request.url.path,
            type(exc).__name__,
            str(exc).splitlines()[0] if str(exc) else "",
        )
        detail = "a value in the request cannot be stored: out of range, too long or not valid text"
        if _wants_html(request):
            return _html(request, 422, detail)
        errors = [{"loc": [], "msg": detail, "type": "unstorable_value"}]
        return problem(422, detail, title="Invalid request", errors=errors)

    async def inventory_error(request: Request, exc: InventoryError) -> Response:
        # 422 for invalid input, 409 for a conflict with the stock (with the shortage)
        status = exc.status_code
        if _wants_html(request):
            return _html(request, status, str(exc))
        errors = [{"loc": [], "msg": str(exc), "type": type(exc).__name__}]
        return problem(status, str(exc), errors=errors, **exc.problem())

    async def account_error(request: Request, exc: AccountError) -> Response:
        # 422 invalid input, 409 a shop the tenant already has, 404 not in this tenant
        status = exc.status_code
        if _wants_html(request):
            return _html(request, status, str(exc))
        if status == 422:
            errors = [{"loc": [], "msg": str(exc), "type": type(exc).__name__}]
            return problem(status, str(exc), errors=errors)
        return problem(status, str(exc))

    async def locked(request: Request, exc: LoginLocked) -> Response:
        return problem(429, str(exc), headers={"Retry-After": "60"})

    async def unexpected(request: Request, exc: Exception) -> Response:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        if _wants_html(request):
            return _html(request, 500, "Something went wrong on our side; it has been logged.")
        return problem(500, "internal error; it has been logged")

    app.add_exception_handler(StarletteHTTPException, http_error)  # type: ignore[arg-type]
    app.add_exception_handler(HTTPException, http_error)  # type: ignore[arg-type]
    app.add_exception_handler(RequestValidationError, validation_error)  # type: ignore[arg-type]
    for exc_type in (AuthError, TenantError, DependencyError, PasswordPolicyError, LedgerError):
        app.add_exception_handler(exc_type, domain_error)
    app.add_exception_handler(LoginLocked, locked)  # type: ignore[arg-type]
    app.add_exception_handler(InventoryError, inventory_error)  # type: ignore[arg-type]
    app.add_exception_handler(AccountError, account_error)  # type: ignore[arg-type]

    async def statement_error(request: Request, exc: Exception) -> Response:
        if is_unstorable(exc):
            return await unstorable(request, exc)
        raise exc  # any other database error is ours: on to the 500 handler, as before

    for refused in UNSTORABLE:
        app.add_exception_handler(refused, unstorable)
    app.add_exception_handler(StatementError, statement_error)
    app.add_exception_handler(Exception, unexpected)
