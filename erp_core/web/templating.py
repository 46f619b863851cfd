"""Templates per theme, translated, rendered whole or one block at a time.

Template lookup for a request: the tenant's theme (``Tenant.theme``), the themes it builds on
(its ``depends``), the ``default`` theme, then every plugin's templates, then the kernel's own
small fallbacks, so the kernel still works with no theme installed. There is one Jinja
environment per theme, built on first use and kept.

``render(request, name, ctx, block=...)`` renders only ``block`` for an htmx request and the
whole page otherwise, from the same template, and always sends ``Vary: HX-Request``. Every page
gets the shell's context (tenant, menu, language, flash messages; see :mod:`erp_core.web.shell`).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from contextvars import ContextVar
from datetime import UTC, date, datetime, tzinfo
from decimal import Decimal
from http import HTTPStatus
from importlib.resources import files
from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse, Response
from jinja2 import ChoiceLoader, Environment, FileSystemLoader, select_autoescape
from jinja2_fragments import render_block
from markupsafe import Markup

from erp_core import i18n
from erp_core.i18n import Catalogs, Message, translate
from erp_core.plugins.manifest import PluginManifest
from erp_core.plugins.registry import PluginRegistry

log = logging.getLogger(__name__)

CORE_TEMPLATES = Path(__file__).parent / "templates"
DEFAULT_THEME = "default"
#: Component macro files, reachable in every template as ``ui.<macro>`` (no import needed,
#: so a block rendered alone for htmx still finds them). A theme may override any of them.
COMPONENT_FILES = (
    "components/forms.html",
    "components/list.html",
    "components/dialog.html",
)

_zone: ContextVar[tzinfo] = ContextVar("erp_display_zone", default=UTC)


def resource_path(spec: str) -> Path:
    """``package:relative/path`` -> a filesystem path inside the installed package."""
    package, _, rel = spec.partition(":")
    return Path(str(files(package).joinpath(rel)))


def is_htmx(request: Request) -> bool:
    """An htmx request that wants a fragment (not a history restore, which needs the page)."""
    return (
        request.headers.get("hx-request") == "true"
        and request.headers.get("hx-history-restore-request") != "true"
    )


# --- filters -------------------------------------------------------------------------------


def format_datetime(value: Any, fmt: str = "%Y-%m-%d %H:%M", zone: tzinfo | None = None) -> str:
    """A UTC datetime in the tenant's time zone (set per render, or given)."""
    if value is None or value == "":
        return ""
    if isinstance(value, datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value.astimezone(zone or _zone.get()).strftime(fmt)
    if isinstance(value, date):
        return value.isoformat()
    return str(value)


def format_value(value: Any, zone: tzinfo | None = None, translations: Any = None) -> str:
    """How a list cell (or an exported one) shows a value of any type."""
    t = translations or i18n.active()
    if value is None:
        return ""
    if isinstance(value, bool):
        return t.gettext("Yes") if value else t.gettext("No")
    if isinstance(value, datetime | date):
        return format_datetime(value, zone=zone)
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, Message):
        return translate(value, t)
    if isinstance(value, list | tuple):
        return ", ".join(format_value(v, zone, t) for v in value)
    return str(value)


class _Components:
    """``ui.field(...)``: macros of the component files, looked up in order, loaded lazily."""

    def __init__(self, env: Environment, names: Sequence[str]) -> None:
        self._env = env
        self._names = names

    def __getattr__(self, attr: str) -> Any:
        if attr.startswith("_"):
            raise AttributeError(attr)
        for name in self._names:
            module = self._env.get_template(name).module
            if hasattr(module, attr):
                return getattr(module, attr)
        raise AttributeError(f"no component macro {attr!r} in {', '.join(self._names)}")


# --- environments per theme ----------------------------------------------------------------


class UiTemplates:
    """The template environments of one application, one per theme, and its catalogs."""

    def __init__(self, registry: PluginRegistry, *, auto_reload: bool = False) -> None:
        self.registry = registry
        self.auto_reload = auto_reload
        manifests = registry.manifests()
        self.themes: dict[str, PluginManifest] = {m.name: m for m in manifests if m.kind == "theme"}
        self.plugin_dirs: list[Path] = [
            resource_path(m.templates) for m in manifests if m.kind != "theme" and m.templates
        ]
        self.versions: dict[str, str] = {m.name: m.version for m in manifests}
        self.catalogs = Catalogs(
            (m.name, resource_path(m.translations)) for m in manifests if m.translations
        )
        self._envs: dict[str, Environment] = {}

    def resolve_theme(self, wanted: str | None) -> str:
        """The theme to use for ``wanted``: itself if installed, else the default theme, else
        ``""`` (the kernel's fallback templates only)."""
        if wanted and wanted in self.themes:
            return wanted
        return DEFAULT_THEME if DEFAULT_THEME in self.themes else ""

    def theme_chain(self, theme: str) -> list[str]:
        """``theme``, the themes it depends on (nearest first), then the default theme."""
        chain: list[str] = []
        stack = [theme] if theme else []
        while stack:
            name = stack.pop(0)
            if name in chain or name not in self.themes:
                continue
            chain.append(name)
            stack.extend(self.themes[name].depends)
        if DEFAULT_THEME in self.themes and DEFAULT_THEME not in chain and theme:
            chain.append(DEFAULT_THEME)
        return chain

    def search_path(self, theme: str) -> list[Path]:
        dirs = [
            resource_path(t.templates)
            for t in (self.themes[n] for n in self.theme_chain(theme))
            if t.templates
        ]
        return [*dirs, *self.plugin_dirs, CORE_TEMPLATES]

    def env(self, theme: str) -> Environment:
        hit = self._envs.get(theme)
        if hit is None:
            hit = self._envs[theme] = self._make_env(theme)
        return hit

    def _make_env(self, theme: str) -> Environment:
        env = Environment(
            loader=ChoiceLoader([FileSystemLoader(str(d)) for d in self.search_path(theme)]),
            autoescape=select_autoescape(["html", "xml"]),
            extensions=["jinja2.ext.i18n"],
            auto_reload=self.auto_reload,
            trim_blocks=True,
            lstrip_blocks=True,
        )
        env.policies["ext.i18n.trimmed"] = True
        env.install_gettext_callables(  # type: ignore[attr-defined]
            i18n.gettext,
            i18n.ngettext,
            newstyle=True,
            pgettext=i18n.pgettext,
            npgettext=i18n.npgettext,
        )
        env.globals["ui"] = _Components(env, COMPONENT_FILES)
        env.globals["asset"] = self.asset
        env.globals["translate"] = translate
        env.globals["dgettext"] = _dgettext
        env.globals["theme_name"] = theme
        env.filters["dt"] = format_datetime
        env.filters["cell"] = format_value
        env.filters["t"] = translate
        return env

    def asset(self, owner: str, path: str) -> str:
        """URL of a static file of a theme or plugin (``core`` for the kernel's), versioned so
        that browsers may cache it for long."""
        version = self.versions.get(owner, "")
        return f"/static/{owner}/{path}" + (f"?v={version}" if version else "")


def block_owner(env: Environment, name: str, block: str) -> str:
    """The template in ``name``'s ``{% extends %}`` chain that defines ``block`` (the nearest),
    so that a page extending a generic one (``components/list_page.html``) can be rendered
    one block at a time without repeating the block."""
    current: str | None = name
    seen: set[str] = set()
    while current is not None and current not in seen:
        seen.add(current)
        if block in env.get_template(current).blocks:
            return current
        current = _parent(env, current)
    return name  # jinja2-fragments then reports the missing block


_parents: dict[tuple[int, str], str | None] = {}


def _parent(env: Environment, name: str) -> str | None:
    key = (id(env), name)
    if key not in _parents:
        _parents[key] = _parse_parent(env, name)
    return _parents[key]


def _parse_parent(env: Environment, name: str) -> str | None:
    from jinja2 import nodes

    assert env.loader is not None
    source, _, _ = env.loader.get_source(env, name)
    node = env.parse(source).find(nodes.Extends)
    if node is not None and isinstance(node.template, nodes.Const):
        return str(node.template.value)
    return None


def _dgettext(domain: str, message: str) -> str:
    t = i18n.active()
    if isinstance(t, i18n.Translations):
        return t.dgettext(domain, message)
    return t.gettext(message)


def make_templates(registry: PluginRegistry) -> UiTemplates:
    return UiTemplates(registry)


# --- rendering -----------------------------------------------------------------------------


def render(
    request: Request,
    name: str,
    context: dict[str, Any] | None = None,
    *,
    block: str | None = None,
    status_code: int = 200,
    headers: dict[str, str] | None = None,
    oob: Iterable[str] = (),
    messages: Iterable[tuple[str, object]] = (),
) -> Response:
    """Render template ``name``: the whole page, or only ``block`` for an htmx request.

    ``oob`` names templates rendered after the block as htmx out-of-band swaps (they see
    ``oob=True``), e.g. ``"core/nav.html"`` after a change that alters the menu. ``messages``
    are ``(level, text)`` pairs shown now, beside the flash messages of a redirect.
    """
    from erp_core.web.flash import FLASH_COOKIE
    from erp_core.web.shell import shell_context

    ui: UiTemplates = request.app.state.templates
    shell = shell_context(request)
    shell["flashes"] = [*shell["flashes"], *messages]
    ctx: dict[str, Any] = {"request": request, **shell, **(context or {})}
    env = ui.env(shell["theme"])
    t_token = i18n.activate(shell["translations"])
    z_token = _zone.set(shell["zone"])
    try:
        ctx["flashes"] = [(lvl, translate(m)) for lvl, m in ctx["flashes"]]
        if block is not None and is_htmx(request):
            parts = [render_block(env, block_owner(env, name, block), block, ctx)]
            for extra in oob:
                parts.append(env.get_template(extra).render({**ctx, "oob": True}))
            if ctx["flashes"] and "core/flash.html" not in oob:
                parts.append(env.get_template("core/flash.html").render({**ctx, "oob": True}))
            html = "".join(parts)
        else:
            html = env.get_template(name).render(ctx)
    finally:
        _zone.reset(z_token)
        i18n.deactivate(t_token)
    resp = HTMLResponse(html, status_code=status_code, headers=headers)
    resp.headers["Vary"] = "HX-Request"
    resp.headers.setdefault("Cache-Control", "no-store")
    if shell["flash_taken"]:
        resp.delete_cookie(FLASH_COOKIE, path="/")
    return resp


def render_error(
    request: Request, status: int, detail: str, headers: dict[str, str] | None = None
) -> Response:
    if status == 401:
        from urllib.parse import quote

        return HTMLResponse(
            "", status_code=303, headers={"Location": f"/login?next={quote(request.url.path)}"}
        )
    try:
        return render(
            request,
            "core/error.html",
            {"status": status, "title": HTTPStatus(status).phrase, "detail": detail},
            block="content",
            status_code=status,
            headers=headers,
        )
    except Exception:  # the error page must never fail
        log.exception("the error page could not be rendered")
        return HTMLResponse(
            Markup("<h1>{}</h1>").format(status), status_code=status, headers=headers
        )
