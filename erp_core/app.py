"""The FastAPI application factory."""

from __future__ import annotations

import importlib
import logging
from typing import Any

from fastapi import APIRouter, Depends, FastAPI
from fastapi.routing import APIRoute
from fastapi.staticfiles import StaticFiles

from erp_core import __version__
from erp_core.api import problems
from erp_core.api.routes import audit, health, plugins, tenants, tokens, users
from erp_core.auth.deps import require_plugin
from erp_core.channels import api as channels_api
from erp_core.channels import webhooks as channels_webhooks
from erp_core.db.session import Database
from erp_core.inventory import api as inventory_api
from erp_core.ledger import api as ledger_api
from erp_core.plugins.registry import PluginRegistry
from erp_core.settings import Settings, get_settings
from erp_core.web import admin_views, auth_views, inventory_views, ledger_views
from erp_core.web.templating import make_templates, resource_path

log = logging.getLogger(__name__)

API_PREFIX = "/api/v1"


def route_permission(route: APIRoute) -> str | None:
    """The permission a route declares, ``"public"`` for public routes, ``"authenticated"`` for
    routes any signed-in member may call (they depend on the principal, e.g. logout), None if
    it declares none. A permission wins over the other two."""
    found: str | None = None
    stack = list(route.dependant.dependencies)
    while stack:
        dep = stack.pop()
        call = dep.call
        perm = getattr(call, "erp_permission", None)
        if perm:
            return str(perm)
        if getattr(call, "erp_authenticated", False):
            found = "authenticated"
        elif getattr(call, "erp_public", False) and found is None:
            found = "public"
        stack.extend(dep.dependencies)
    return found


def _mount_plugin_routers(app: FastAPI, registry: PluginRegistry) -> None:
    for name in list(registry.order):
        if name not in registry.plugins:  # removed with a dependency that failed
            continue
        m = registry.manifest(name)
        routers: list[tuple[APIRouter, str]] = []
        try:
            for mount in m.routers:
                modname, _, attr = mount.target.partition(":")
                router = getattr(importlib.import_module(modname), attr)
                if not isinstance(router, APIRouter):
                    raise TypeError(f"{mount.target} is not an APIRouter")
                # a plugin route names its permission (or is public); being signed in is not enough
                undeclared = [
                    r.path
                    for r in router.routes
                    if isinstance(r, APIRoute) and route_permission(r) in (None, "authenticated")
                ]
                if undeclared:
                    raise ValueError(
                        f"routes without a declared permission: {', '.join(undeclared)}"
                    )
                prefix = (API_PREFIX if mount.kind == "api" else "") + mount.prefix
                routers.append((router, prefix))
        except Exception as exc:
            log.error("plugin %s routers failed to load: %s", name, exc)
            registry.remove(name, f"routers failed to load: {type(exc).__name__}: {exc}")
            continue
        for router, prefix in routers:
            app.include_router(router, prefix=prefix, dependencies=[Depends(require_plugin(name))])
        if m.static:
            app.mount(
                f"/static/{name}",
                StaticFiles(directory=resource_path(m.static)),
                name=f"static-{name}",
            )


def create_app(
    settings: Settings | None = None,
    *,
    registry: PluginRegistry | None = None,
    db: Database | None = None,
) -> FastAPI:
    """Build the web application: kernel routes, then every installed plugin's routers."""
    settings = settings or get_settings()
    registry = registry or PluginRegistry.discover(settings.plugins or None)
    db = db or Database(settings.resolved_database_url())
    app = FastAPI(
        title="ERP",
        version=__version__,
        openapi_url="/openapi.json",
        docs_url="/docs",
        redoc_url=None,
    )
    app.state.settings = settings
    app.state.db = db
    if db.registry is None:
        db.registry = registry
    app.state.registry = registry
    problems.install(app)
    app.include_router(health.router)
    app.include_router(channels_webhooks.router)  # public: platforms push here
    api = APIRouter(prefix=API_PREFIX)
    for module in (
        tenants,
        users,
        tokens,
        plugins,
        audit,
        ledger_api,
        inventory_api,
        channels_api,
    ):
        api.include_router(module.router)
    app.include_router(api)
    app.include_router(auth_views.router)
    app.include_router(admin_views.router)
    app.include_router(inventory_views.router)
    app.include_router(ledger_views.router)
    _mount_plugin_routers(app, registry)
    # after mounting: a plugin whose routers failed is gone, and so are its permissions
    app.state.known_permissions = [p.name for p in registry.permissions()]
    app.state.templates = make_templates(registry)
    app.mount(
        "/static/core",
        StaticFiles(directory=resource_path("erp_core:web/static/core")),
        name="static-core",
    )
    registry.hook.erp_startup(app=app)
    return app


def app_factory() -> Any:
    """Entry for ``uvicorn --factory erp_core.app:app_factory``."""
    from erp_core.tasks.process import settle_heap

    app = create_app()
    settle_heap()  # as ``erp serve`` does
    return app
