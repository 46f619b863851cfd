"""Login, logout, tenant switch, language switch and the home page."""

from __future__ import annotations

import secrets
from typing import Annotated
from urllib.parse import urlsplit

from fastapi import APIRouter, Depends, Form, HTTPException, Request
from fastapi.responses import RedirectResponse, Response
from sqlalchemy import select

from erp_core.audit.service import record
from erp_core.auth import service
from erp_core.auth.deps import (
    SESSION_COOKIE,
    CurrentPrincipal,
    DbSession,
    client_ip,
    optional_principal,
    public,
)
from erp_core.auth.models import UserSession
from erp_core.auth.principal import Principal
from erp_core.auth.security import hash_password, needs_rehash, same, verify_password
from erp_core.i18n import LOCALES, N_
from erp_core.web.flash import redirect
from erp_core.web.shell import LOCALE_COOKIE, plugin_menu
from erp_core.web.templating import render

router = APIRouter(include_in_schema=False)

LOGIN_CSRF_COOKIE = "erp_login_csrf"


def _safe_next(target: str | None) -> str:
    if not target:
        return "/"
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not target.startswith("/") or target.startswith("//"):
        return "/"
    return target


def _login_page(
    request: Request,
    *,
    error: object = "",
    email: str = "",
    next_url: str = "/",
    status: int = 200,
) -> Response:
    token = request.cookies.get(LOGIN_CSRF_COOKIE) or secrets.token_urlsafe(24)
    resp = render(
        request,
        "core/login.html",
        {"login_csrf": token, "error": error, "email": email, "next": next_url},
        status_code=status,
    )
    resp.set_cookie(
        LOGIN_CSRF_COOKIE,
        token,
        httponly=True,
        samesite="strict",
        secure=request.app.state.settings.secure_cookies,
        path="/login",
    )
    return resp


@router.get("/login", dependencies=[Depends(public)])
def login_form(request: Request, next: str = "/") -> Response:
    return _login_page(request, next_url=_safe_next(next))


@router.post("/login", dependencies=[Depends(public)])
def login(
    request: Request,
    db: DbSession,
    email: Annotated[str, Form(max_length=254)],
    password: Annotated[str, Form(max_length=1024)],
    csrf_token: Annotated[str, Form(max_length=128)] = "",
    next_url_field: Annotated[str, Form(alias="next", max_length=2000)] = "/",
    tenant: Annotated[str, Form(max_length=63)] = "",
) -> Response:
    settings = request.app.state.settings
    next_url = _safe_next(next_url_field)
    cookie = request.cookies.get(LOGIN_CSRF_COOKIE, "")
    if not cookie or not csrf_token or not same(cookie, csrf_token):
        return _login_page(
            request,
            error=N_("Your form expired; please try again."),
            email=email,
            next_url=next_url,
            status=403,
        )
    ip = client_ip(request)
    keys = service.throttle_keys(email, ip)
    try:
        service.check_lock(db, keys)
    except service.LoginLocked as exc:
        record(db, "login.locked", tenant_id=None, actor=email, ip=ip, outcome="denied")
        db.commit()
        return _login_page(request, error=exc, email=email, next_url=next_url, status=429)
    user = service.get_user(db, email)
    ok = verify_password(user.password_hash if user else None, password)
    tenants = service.user_tenants(db, user.id) if (ok and user and user.is_active) else []
    if not ok or user is None or not user.is_active or not tenants:
        locked = service.note_failure(db, keys, settings)
        some = tenants[0].id if tenants else None
        if some is None and user is not None:
            member_of = service.user_tenants(db, user.id)
            some = member_of[0].id if member_of else None
        record(
            db,
            "login.failed",
            tenant_id=some,
            actor=email,
            ip=ip,
            outcome="denied",
            details={"locked": locked is not None},
        )
        db.commit()
        msg = N_("Wrong e-mail or password.")
        if ok and user is not None and user.is_active and not tenants:
            msg = N_("Your account is not a member of any active tenant.")
        return _login_page(request, error=msg, email=email, next_url=next_url, status=401)
    chosen = next((t for t in tenants if t.slug == tenant), tenants[0])
    if user.password_hash and needs_rehash(user.password_hash):
        user.password_hash = hash_password(password)
    service.clear_failures(db, keys)
    _, key = service.create_session(db, user, chosen, settings)
    record(db, "login", tenant_id=chosen.id, actor=user.email, actor_user_id=user.id, ip=ip)
    db.commit()
    resp = RedirectResponse(next_url, status_code=303)
    resp.set_cookie(
        SESSION_COOKIE,
        key,
        httponly=True,
        samesite="lax",
        secure=settings.secure_cookies,
        max_age=settings.session_hours * 3600,
    )
    resp.delete_cookie(LOGIN_CSRF_COOKIE, path="/login")
    return resp


@router.post("/logout")
def logout(request: Request, db: DbSession, principal: CurrentPrincipal) -> Response:
    if principal.via != "session":
        raise HTTPException(400, "logout applies to browser sessions only")
    key = request.cookies.get(SESSION_COOKIE, "")
    service.end_session(db, key)
    record(
        db,
        "logout",
        tenant_id=principal.tenant_id,
        actor=principal.email,
        actor_user_id=principal.user_id,
        ip=client_ip(request),
    )
    db.commit()
    resp = redirect(request, "/login", N_("You have logged out."), "info")
    resp.delete_cookie(SESSION_COOKIE)
    return resp


@router.post("/switch-tenant")
def switch_tenant(
    request: Request,
    db: DbSession,
    principal: CurrentPrincipal,
    tenant: Annotated[str, Form(max_length=63)],
) -> Response:
    if principal.via != "session":
        raise HTTPException(400, "tenant switching applies to browser sessions only")
    target = next(
        (t for t in service.user_tenants(db, principal.user_id) if t.slug == tenant), None
    )
    if target is None:
        raise HTTPException(404, f"you are not a member of tenant {tenant!r}")
    us = db.scalar(select(UserSession).where(UserSession.id == principal.session_id))
    assert us is not None
    us.active_tenant_id = target.id
    record(
        db,
        "tenant.switched",
        tenant_id=target.id,
        actor=principal.email,
        actor_user_id=principal.user_id,
        ip=client_ip(request),
        details={"from": principal.tenant_slug},
    )
    db.commit()
    return redirect(request, "/", N_("You are now working in %(tenant)s.", tenant=target.name))


#: Kept for callers of the first version; the shell builds the navigation now.
menu_for = plugin_menu


@router.get("/", dependencies=[Depends(public)])
def home(
    request: Request,
    principal: Annotated[Principal | None, Depends(optional_principal)],
) -> Response:
    if principal is None:
        return RedirectResponse("/login", status_code=303)
    return render(request, "core/home.html")


@router.post("/locale", dependencies=[Depends(public)])
def set_locale(
    request: Request,
    principal: Annotated[Principal | None, Depends(optional_principal)],
    locale: Annotated[str, Form(max_length=16)],
    next_url_field: Annotated[str, Form(alias="next", max_length=2000)] = "/",
) -> Response:
    """The language switch: remembered in a cookie for a year (the CSRF token is checked for
    signed-in users by ``optional_principal``, like every form)."""
    if locale not in LOCALES:
        raise HTTPException(422, N_("unknown language %(value)s", value=repr(locale)))
    resp = RedirectResponse(_safe_next(next_url_field), status_code=303)
    resp.set_cookie(
        LOCALE_COOKIE,
        locale,
        max_age=365 * 24 * 3600,
        httponly=True,
        samesite="lax",
        secure=request.app.state.settings.secure_cookies,
    )
    return resp
