"""The administration pages under ``/admin``: the app center (plugins), users, roles and
permissions, API tokens, the audit log and the tenant's settings.

Every route names its permission with ``require`` (the server checks it; the navigation only
hides what the user cannot open), every form carries the session's CSRF token, and every change
goes through the same use cases as the JSON API (:mod:`erp_core.auth.admin`,
:mod:`erp_core.tenancy.service`), so the rules live in one place.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime, time
from typing import Annotated, Any
from zoneinfo import available_timezones

from fastapi import APIRouter, Depends, Form, HTTPException, Request
from fastapi.responses import Response
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from erp_core.audit.models import AuditEvent
from erp_core.auth import admin
from erp_core.auth.deps import DbSession, require
from erp_core.auth.models import ApiToken, Membership, Role, User
from erp_core.auth.principal import Principal
from erp_core.i18n import LOCALES, N_, Message
from erp_core.plugins.manifest import STAGES, PluginManifest
from erp_core.plugins.registry import DependencyError, PluginRegistry
from erp_core.tenancy.models import Tenant
from erp_core.tenancy.service import (
    MissingDependencies,
    TenantError,
    disable_plugin,
    enable_plugin,
    enabled_plugins,
    installed_themes,
    update_tenant,
)
from erp_core.web.flash import redirect
from erp_core.web.listing import (
    BulkAction,
    Column,
    Edit,
    Filter,
    ListView,
    list_context,
    mount_list,
)
from erp_core.web.shell import LANGUAGE_NAMES, tenant_prefs
from erp_core.web.templating import is_htmx, render

router = APIRouter(prefix="/admin", include_in_schema=False)


def _field_errors(exc: Exception, default_field: str | None = None) -> dict[str, object]:
    """An error of a use case as ``{field: message}`` (``""``: the whole form); templates
    translate the message (``|t``) when they show it next to its field."""
    name = getattr(exc, "field", None) or default_field or ""
    return {name: exc.args[0] if exc.args else type(exc).__name__}


# --- the app center ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AppCard:
    manifest: PluginManifest
    enabled: bool
    needs: list[tuple[str, str, bool]]  # (name, title, enabled)
    needed_by: list[str]


def _cards(registry: PluginRegistry, enabled: frozenset[str]) -> list[AppCard]:
    cards = []
    for m in registry.manifests():
        if m.kind == "theme":
            continue
        needs = [
            (d, registry.manifest(d).title, d in enabled) for d in registry.requirements(m.name)
        ]
        needed_by = [registry.manifest(n).title for n in registry.dependents(m.name, enabled)]
        cards.append(AppCard(m, m.name in enabled, needs, needed_by))
    return cards


def _plugins_context(
    request: Request, db: Session, principal: Principal, view: str = ""
) -> dict[str, Any]:
    registry: PluginRegistry = request.app.state.registry
    enabled = enabled_plugins(db, principal.tenant_id)
    tenant = db.get(Tenant, principal.tenant_id)
    cards = _cards(registry, enabled)
    stages = [
        (stage, STAGES[stage], [c for c in cards if c.manifest.stage == stage])
        for stage in (1, 2, 3, 4, 0)
    ]
    themes = [m for m in registry.manifests() if m.kind == "theme"]
    return {
        "cards": cards,
        "stages": stages,
        "view": "stages" if view == "stages" else "list",
        "themes": themes,
        "current_theme": tenant.theme if tenant else "",
        "broken": registry.broken,
        "can_manage": principal.can("core.plugins.manage"),
        "problems": {},
        "offer": {},
        "stage_titles": STAGES,
    }


@router.get("/plugins")
def plugins_page(
    request: Request,
    db: DbSession,
    principal: Annotated[Principal, Depends(require("core.plugins.read"))],
    view: str = "",
) -> Response:
    ctx = _plugins_context(request, db, principal, view)
    return render(request, "admin/plugins.html", ctx, block="apps")


def _plugin_change(
    request: Request,
    db: Session,
    principal: Principal,
    name: str,
    *,
    enable: bool,
    with_dependencies: bool,
    view: str,
) -> Response:
    registry: PluginRegistry = request.app.state.registry
    if name not in registry.plugins and not any(b.name == name for b in registry.broken):
        raise HTTPException(404, N_("plugin %(name)s is not installed", name=repr(name)))
    tenant = db.get(Tenant, principal.tenant_id)
    assert tenant is not None
    back = "/admin/plugins" + ("?view=stages" if view == "stages" else "")
    try:
        if enable:
            newly = enable_plugin(
                db,
                registry,
                tenant,
                name,
                with_dependencies=with_dependencies,
                actor=principal.label,
                actor_user_id=principal.user_id,
            )
            titles = ", ".join(registry.manifest(n).title for n in newly)
            message: Message = N_("Enabled: %(names)s.", names=titles or name)
        else:
            disable_plugin(
                db, registry, tenant, name, actor=principal.label, actor_user_id=principal.user_id
            )
            message = N_("Disabled: %(names)s.", names=registry.manifest(name).title)
        db.commit()
    except DependencyError as exc:
        db.rollback()
        ctx = _plugins_context(request, db, principal, view)
        ctx["problems"] = {name: exc.args[0] if exc.args else str(exc)}
        if isinstance(exc, MissingDependencies):
            ctx["offer"] = {name: [registry.manifest(n).title for n in exc.needed]}
        return render(request, "admin/plugins.html", ctx, block="apps", status_code=409)
    if is_htmx(request):
        ctx = _plugins_context(request, db, principal, view)
        return render(
            request,
            "admin/plugins.html",
            ctx,
            block="apps",
            oob=("core/nav.html",),
            messages=[("success", message)],
        )
    return redirect(request, back, message)


@router.post("/plugins/{name}/enable")
def plugin_enable(
    name: str,
    request: Request,
    db: DbSession,
    principal: Annotated[Principal, Depends(require("core.plugins.manage"))],
    with_dependencies: Annotated[str, Form(max_length=5)] = "",
    view: Annotated[str, Form(max_length=10)] = "",
) -> Response:
    return _plugin_change(
        request,
        db,
        principal,
        name,
        enable=True,
        with_dependencies=with_dependencies == "1",
        view=view,
    )


@router.post("/plugins/{name}/disable")
def plugin_disable(
    name: str,
    request: Request,
    db: DbSession,
    principal: Annotated[Principal, Depends(require("core.plugins.manage"))],
    view: Annotated[str, Form(max_length=10)] = "",
) -> Response:
    return _plugin_change(
        request, db, principal, name, enable=False, with_dependencies=False, view=view
    )


# --- users ---------------------------------------------------------------------------------


def _role_choices(db: Session) -> list[tuple[str, str]]:
    return [(r.name, r.title or r.name) for r in db.scalars(select(Role).order_by(Role.name))]


def _save_role(db: Session, principal: Principal, user_id: int, value: str) -> None:
    admin.change_member(db, principal, user_id, role=value)


def _set_active(active: bool) -> Any:
    def run(db: Session, principal: Principal, ids: list[int]) -> Message:
        changed = 0
        for uid in ids:
            if admin.change_member(db, principal, uid, is_active=active):
                changed += 1
        if active:
            return N_("%(n)s users activated.", n=changed)
        return N_("%(n)s users deactivated.", n=changed)

    return run


USERS = ListView(
    name="users",
    title=N_("Users"),
    query=select(
        User.id.label("id"),
        User.email.label("email"),
        User.name.label("name"),
        Role.name.label("role"),
        Membership.is_active.label("is_active"),
        Membership.created_at.label("joined"),
    )
    .join(Membership, Membership.user_id == User.id)
    .join(Role, Role.id == Membership.role_id),
    id_expr=User.id,
    columns=(
        Column(key="email", title=N_("E-mail"), expr=User.email, sortable=True),
        Column(key="name", title=N_("Name"), expr=User.name, sortable=True),
        Column(
            key="role",
            title=N_("Role"),
            expr=Role.name,
            edit=Edit(
                save=_save_role,
                permission="core.users.manage",
                kind="select",
                choices=_role_choices,
            ),
        ),
        Column(key="is_active", title=N_("Active"), expr=Membership.is_active),
        Column(key="joined", title=N_("Member since"), expr=Membership.created_at),
        Column(key="id", title=N_("ID"), expr=User.id, sortable=True, visible=False),
    ),
    search=(User.email, User.name),
    filters=(
        Filter(key="role_is", title=N_("Role"), expr=Role.name, choices=_role_choices),
        Filter(key="active", title=N_("Active"), expr=Membership.is_active, kind="bool"),
    ),
    sort="email",
    bulk_actions=(
        BulkAction(
            key="deactivate",
            title=N_("Deactivate"),
            permission="core.users.manage",
            run=_set_active(False),
            danger=True,
        ),
        BulkAction(
            key="activate",
            title=N_("Activate"),
            permission="core.users.manage",
            run=_set_active(True),
        ),
    ),
)


def _users_extra(request: Request, db: Session) -> dict[str, Any]:
    principal: Principal = request.state.principal
    return {
        "roles": _role_choices(db),
        "can_manage": principal.can("core.users.manage"),
        "form": {"email": "", "name": "", "role": "staff"},
        "errors": {},
        "dialog_open": False,
    }


USERS = mount_list(
    router,
    "/users",
    USERS,
    read="core.users.read",
    template="admin/users.html",
    context=_users_extra,
)


@router.post("/users")
def add_user(
    request: Request,
    db: DbSession,
    principal: Annotated[Principal, Depends(require("core.users.manage"))],
    email: Annotated[str, Form(max_length=254)] = "",
    name: Annotated[str, Form(max_length=200)] = "",
    role: Annotated[str, Form(max_length=63)] = "",
    password: Annotated[str, Form(max_length=1024)] = "",
) -> Response:
    errors: dict[str, object] = {}
    if not email.strip():
        errors["email"] = N_("enter an e-mail address")
    else:
        try:
            admin.add_member(
                db, principal, email=email, role=role, name=name, password=password or None
            )
            db.commit()
        except ValueError as exc:
            db.rollback()
            errors = _field_errors(exc)
    if not errors:
        return redirect(request, "/admin/users", N_("%(email)s was added.", email=email.strip()))
    ctx = {
        **list_context(USERS, request, db, principal),
        "roles": _role_choices(db),
        "can_manage": True,
        "form": {"email": email, "name": name, "role": role},
        "errors": errors,
        "dialog_open": True,
    }
    return render(request, "admin/users.html", ctx, block="add_user", status_code=422)


# --- roles ---------------------------------------------------------------------------------


def _permission_groups(request: Request) -> list[tuple[str, list[tuple[str, str]]]]:
    """Known permissions grouped by the plugin that declares them (the kernel first)."""
    from erp_core.auth.permissions import KERNEL_PERMISSIONS

    registry: PluginRegistry = request.app.state.registry
    known = set(request.app.state.known_permissions)
    groups: list[tuple[str, list[tuple[str, str]]]] = [  # titles translated on the page
        (N_("Kernel"), [(p.name, p.title) for p in KERNEL_PERMISSIONS])
    ]
    for m in registry.manifests():
        perms = [(p.name, p.title) for p in m.permissions if p.name in known]
        if perms:
            groups.append((m.title, perms))
    return groups


@router.get("/roles")
def roles_page(
    request: Request,
    db: DbSession,
    principal: Annotated[Principal, Depends(require("core.roles.read"))],
) -> Response:
    counts = dict(
        db.execute(select(Membership.role_id, func.count()).group_by(Membership.role_id)).all()
    )
    roles = list(db.scalars(select(Role).order_by(Role.name)))
    return render(
        request,
        "admin/roles.html",
        {
            "roles": [(r, counts.get(r.id, 0)) for r in roles],
            "can_manage": principal.can("core.roles.manage"),
        },
    )


def _role_form_ctx(
    request: Request,
    principal: Principal,
    role: Role | None,
    *,
    name: str = "",
    title: str = "",
    patterns: list[str] | None = None,
    errors: dict[str, object] | None = None,
) -> dict[str, Any]:
    known = set(request.app.state.known_permissions)
    current = patterns if patterns is not None else (list(role.permissions) if role else [])
    checked = {p for p in current if p in known}
    extra = [p for p in current if p not in known]
    return {
        "role": role,
        "name": role.name if role else name,
        "title": title if role is None or title else role.title,
        "groups": _permission_groups(request),
        "checked": checked,
        "extra": "\n".join(extra),
        "errors": errors or {},
        "can_manage": principal.can("core.roles.manage"),
    }


@router.get("/roles/new")
def role_new(
    request: Request,
    principal: Annotated[Principal, Depends(require("core.roles.manage"))],
) -> Response:
    return render(request, "admin/role_form.html", _role_form_ctx(request, principal, None))


def _get_role(db: Session, role_id: int) -> Role:
    role = db.get(Role, role_id)
    if role is None:
        raise HTTPException(404, "Not Found")
    return role


@router.get("/roles/{role_id}")
def role_edit(
    role_id: int,
    request: Request,
    db: DbSession,
    principal: Annotated[Principal, Depends(require("core.roles.read"))],
) -> Response:
    role = _get_role(db, role_id)
    return render(request, "admin/role_form.html", _role_form_ctx(request, principal, role))


def _patterns(form: Any) -> list[str]:
    chosen = [str(v) for v in form.getlist("perm")]
    extra = str(form.get("extra") or "")
    lines = [line.strip() for line in extra.replace(",", "\n").splitlines() if line.strip()]
    return [*chosen, *lines]


@router.post("/roles")
async def role_create(
    request: Request,
    db: DbSession,
    principal: Annotated[Principal, Depends(require("core.roles.manage"))],
) -> Response:
    form = await request.form()
    name = str(form.get("name") or "").strip()[:63]
    title = str(form.get("title") or "")[:200]
    patterns = _patterns(form)
    try:
        admin.create_role(
            db,
            principal,
            name=name,
            title=title,
            permissions=patterns,
            known=request.app.state.known_permissions,
        )
        db.commit()
    except ValueError as exc:
        db.rollback()
        ctx = _role_form_ctx(
            request,
            principal,
            None,
            name=name,
            title=title,
            patterns=patterns,
            errors=_field_errors(exc),
        )
        return render(request, "admin/role_form.html", ctx, block="role_form", status_code=422)
    return redirect(request, "/admin/roles", N_("Role %(name)s created.", name=name))


@router.post("/roles/{role_id}")
async def role_update(
    role_id: int,
    request: Request,
    db: DbSession,
    principal: Annotated[Principal, Depends(require("core.roles.manage"))],
) -> Response:
    role = _get_role(db, role_id)
    form = await request.form()
    title = str(form.get("title") or "")[:200]
    patterns = _patterns(form)
    try:
        admin.change_role(
            db,
            principal,
            role,
            title=title,
            permissions=None if role.name == "owner" else patterns,
            known=request.app.state.known_permissions,
        )
        db.commit()
    except ValueError as exc:
        db.rollback()
        role = _get_role(db, role_id)
        ctx = _role_form_ctx(
            request, principal, role, title=title, patterns=patterns, errors=_field_errors(exc)
        )
        return render(request, "admin/role_form.html", ctx, block="role_form", status_code=422)
    return redirect(request, "/admin/roles", N_("Role %(name)s saved.", name=role.name))


@router.post("/roles/{role_id}/delete")
def role_delete(
    role_id: int,
    request: Request,
    db: DbSession,
    principal: Annotated[Principal, Depends(require("core.roles.manage"))],
) -> Response:
    role = _get_role(db, role_id)
    name = role.name
    try:
        admin.delete_role(db, principal, role)
        db.commit()
    except ValueError as exc:
        db.rollback()
        return redirect(request, f"/admin/roles/{role_id}", exc, "error")
    return redirect(request, "/admin/roles", N_("Role %(name)s deleted.", name=name))


# --- API tokens ----------------------------------------------------------------------------


def _tokens_ctx(db: Session, principal: Principal) -> dict[str, Any]:
    rows = db.execute(
        select(ApiToken, User.email)
        .join(User, User.id == ApiToken.user_id)
        .order_by(ApiToken.id.desc())
    ).all()
    return {
        "tokens": rows,
        "can_manage": principal.can("core.tokens.manage"),
        "now": datetime.now(UTC),
        "form": {"name": "", "scopes": "*", "expires": ""},
        "errors": {},
        "secret": None,
        "dialog_open": False,
    }


@router.get("/tokens")
def tokens_page(
    request: Request,
    db: DbSession,
    principal: Annotated[Principal, Depends(require("core.tokens.read"))],
) -> Response:
    return render(request, "admin/tokens.html", _tokens_ctx(db, principal), block="tokens")


@router.post("/tokens")
def token_create(
    request: Request,
    db: DbSession,
    principal: Annotated[Principal, Depends(require("core.tokens.manage"))],
    name: Annotated[str, Form(max_length=200)] = "",
    scopes: Annotated[str, Form(max_length=4000)] = "*",
    expires: Annotated[str, Form(max_length=10)] = "",
) -> Response:
    scope_list = [s.strip() for s in scopes.replace(",", "\n").splitlines() if s.strip()]
    errors: dict[str, object] = {}
    expires_at: datetime | None = None
    if expires:
        try:
            day = datetime.strptime(expires, "%Y-%m-%d").date()
            zone = tenant_prefs(request, db)[1]
            expires_at = datetime.combine(day, time(23, 59, 59), tzinfo=zone).astimezone(UTC)
        except ValueError:
            errors["expires_at"] = N_("enter a date like 2030-12-31")
    secret: str | None = None
    if not errors:
        try:
            _, secret = admin.issue_token(
                db,
                principal,
                name=name,
                scopes=scope_list or ["*"],
                known=request.app.state.known_permissions,
                expires_at=expires_at,
            )
            db.commit()
        except ValueError as exc:
            db.rollback()
            errors = _field_errors(exc)
            if "permissions" in errors:
                errors["scopes"] = errors.pop("permissions")
    ctx = _tokens_ctx(db, principal)
    if errors:
        ctx.update(
            form={"name": name, "scopes": scopes, "expires": expires},
            errors=errors,
            dialog_open=True,
        )
        return render(request, "admin/tokens.html", ctx, block="tokens", status_code=422)
    ctx.update(secret=secret, created_name=name.strip())
    # the secret is shown on this response only: never in a redirect, a cookie or the log
    return render(
        request,
        "admin/tokens.html",
        ctx,
        block="tokens",
        status_code=201,
        headers={"Cache-Control": "no-store"},
    )


@router.post("/tokens/{token_id}/revoke")
def token_revoke(
    token_id: int,
    request: Request,
    db: DbSession,
    principal: Annotated[Principal, Depends(require("core.tokens.manage"))],
) -> Response:
    row = db.get(ApiToken, token_id)
    if row is None:
        raise HTTPException(404, "Not Found")
    admin.revoke_token(db, principal, row)
    db.commit()
    message = N_("Token %(name)s revoked.", name=row.name)
    if is_htmx(request):
        return render(
            request,
            "admin/tokens.html",
            _tokens_ctx(db, principal),
            block="tokens",
            messages=[("success", message)],
        )
    return redirect(request, "/admin/tokens", message)


# --- audit log -----------------------------------------------------------------------------

#: Actions the kernel records, with how the audit log names them (plugins' own actions are
#: shown as recorded, and found by the search).
AUDIT_ACTIONS: dict[str, str] = {
    "login": N_("Logged in"),
    "login.failed": N_("Login failed"),
    "login.locked": N_("Login locked"),
    "logout": N_("Logged out"),
    "tenant.switched": N_("Switched tenant"),
    "tenant.updated": N_("Changed tenant settings"),
    "user.added": N_("Added a user"),
    "permission.changed": N_("Changed permissions"),
    "token.created": N_("Created a token"),
    "token.used": N_("Used a token"),
    "token.revoked": N_("Revoked a token"),
    "token.rejected": N_("Token refused"),
    "plugin.enabled": N_("Enabled an app"),
    "plugin.disabled": N_("Disabled an app"),
}
OUTCOMES: dict[str, str] = {"ok": N_("ok"), "denied": N_("denied")}


def _action(row: Any) -> object:
    return AUDIT_ACTIONS.get(row.action, row.action)


def _outcome(row: Any) -> object:
    return OUTCOMES.get(row.outcome, row.outcome)


def _details(row: Any) -> str:
    return json.dumps(row.details, ensure_ascii=False, sort_keys=True) if row.details else ""


AUDIT = mount_list(
    router,
    "/audit",
    ListView(
        name="audit",
        title=N_("Audit log"),
        query=select(AuditEvent),
        id_expr=AuditEvent.id,
        columns=(
            # events are numbered in the order they happen: time sorts by id (indexed)
            Column(
                key="at", title=N_("Time"), expr=AuditEvent.id, sortable=True, value=lambda r: r.at
            ),
            Column(key="action", title=N_("Action"), expr=AuditEvent.action, value=_action),
            Column(key="actor", title=N_("Who"), expr=AuditEvent.actor),
            Column(key="target", title=N_("What"), expr=AuditEvent.target),
            Column(key="outcome", title=N_("Outcome"), expr=AuditEvent.outcome, value=_outcome),
            Column(key="ip", title=N_("IP address"), expr=AuditEvent.ip, visible=False),
            Column(key="details", title=N_("Details"), value=_details, visible=False),
            Column(key="id", title=N_("ID"), expr=AuditEvent.id, visible=False),
        ),
        search=(AuditEvent.actor, AuditEvent.target, AuditEvent.action),
        filters=(
            Filter(
                key="action_is",
                title=N_("Action"),
                expr=AuditEvent.action,
                choices=list(AUDIT_ACTIONS.items()),
            ),
            Filter(
                key="outcome_is",
                title=N_("Outcome"),
                expr=AuditEvent.outcome,
                choices=list(OUTCOMES.items()),
            ),
            Filter(key="since", title=N_("From"), expr=AuditEvent.at, kind="date_from"),
            Filter(key="until", title=N_("To"), expr=AuditEvent.at, kind="date_to"),
        ),
        sort="-at",
    ),
    read="core.audit.read",
)


# --- tenant settings -----------------------------------------------------------------------

_ZONES: list[str] = []


def _zones() -> list[str]:
    if not _ZONES:
        _ZONES.extend(sorted(z for z in available_timezones() if "/" in z))
    return _ZONES


def _settings_ctx(
    request: Request,
    tenant: Tenant,
    principal: Principal,
    form: dict[str, str] | None = None,
    errors: dict[str, object] | None = None,
) -> dict[str, Any]:
    registry: PluginRegistry = request.app.state.registry
    themes = [(n, registry.manifest(n).title) for n in installed_themes(registry)]
    return {
        "form": form
        or {
            "name": tenant.name,
            "currency": tenant.currency,
            "timezone": tenant.timezone,
            "locale": tenant.locale,
            "theme": tenant.theme,
        },
        "errors": errors or {},
        "locales": [(code, LANGUAGE_NAMES[code]) for code in LOCALES],
        "themes": themes,
        "zones": _zones(),
        "can_manage": principal.can("core.tenant.manage"),
    }


@router.get("/settings")
def settings_page(
    request: Request,
    db: DbSession,
    principal: Annotated[Principal, Depends(require("core.tenant.read"))],
) -> Response:
    tenant = db.get(Tenant, principal.tenant_id)
    assert tenant is not None
    return render(request, "admin/settings.html", _settings_ctx(request, tenant, principal))


@router.post("/settings")
def settings_save(
    request: Request,
    db: DbSession,
    principal: Annotated[Principal, Depends(require("core.tenant.manage"))],
    name: Annotated[str, Form(max_length=200)] = "",
    currency: Annotated[str, Form(max_length=8)] = "",
    timezone: Annotated[str, Form(max_length=64)] = "",
    locale: Annotated[str, Form(max_length=16)] = "",
    theme: Annotated[str, Form(max_length=63)] = "",
) -> Response:
    tenant = db.get(Tenant, principal.tenant_id)
    assert tenant is not None
    form = {
        "name": name,
        "currency": currency.strip().upper(),
        "timezone": timezone.strip(),
        "locale": locale,
        "theme": theme,
    }
    try:
        update_tenant(
            db,
            tenant,
            {k: v for k, v in form.items() if v or k == "name"},
            themes=installed_themes(request.app.state.registry),
            actor=principal.label,
            actor_user_id=principal.user_id,
        )
        db.commit()
    except TenantError as exc:
        db.rollback()
        tenant = db.get(Tenant, principal.tenant_id)
        assert tenant is not None
        ctx = _settings_ctx(request, tenant, principal, form, _field_errors(exc))
        return render(request, "admin/settings.html", ctx, block="settings_form", status_code=422)
    return redirect(request, "/admin/settings", N_("Settings saved."))
