"""One template environment: plugins' template folders, then the kernel's.

``render(request, name, ctx, block=...)`` renders only ``block`` for an htmx request and the
whole page otherwise, from the same template, and always sends ``Vary: HX-Request``.
"""

from __future__ import annotations

from http import HTTPStatus
from importlib.resources import files
from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse, Response
from jinja2 import ChoiceLoader, Environment, FileSystemLoader, select_autoescape
from jinja2_fragments.fastapi import Jinja2Blocks

from erp_core.plugins.registry import PluginRegistry

CORE_TEMPLATES = Path(__file__).parent / "templates"


def resource_path(spec: str) -> Path:
    """``package:relative/path`` -> a filesystem path inside the installed package."""
    package, _, rel = spec.partition(":")
    return Path(str(files(package).joinpath(rel)))


def make_templates(registry: PluginRegistry) -> Jinja2Blocks:
    dirs: list[str] = []
    for m in registry.manifests():
        if m.templates:
            dirs.append(str(resource_path(m.templates)))
    dirs.append(str(CORE_TEMPLATES))
    env = Environment(
        loader=ChoiceLoader([FileSystemLoader(d) for d in dirs]),
        autoescape=select_autoescape(["html", "xml"]),
    )
    return Jinja2Blocks(env=env)


def render(
    request: Request,
    name: str,
    context: dict[str, Any] | None = None,
    *,
    block: str | None = None,
    status_code: int = 200,
    headers: dict[str, str] | None = None,
) -> Response:
    templates: Jinja2Blocks = request.app.state.templates
    ctx = {"request": request, "principal": getattr(request.state, "principal", None)}
    ctx.update(context or {})
    partial = (
        block is not None
        and request.headers.get("hx-request") == "true"
        and request.headers.get("hx-history-restore-request") != "true"
    )
    if partial:
        resp = templates.TemplateResponse(
            request, name, ctx, block_name=block, status_code=status_code, headers=headers
        )
    else:
        resp = templates.TemplateResponse(
            request, name, ctx, status_code=status_code, headers=headers
        )
    resp.headers["Vary"] = "HX-Request"
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
            status_code=status,
            headers=headers,
        )
    except Exception:  # the error page must never fail
        return HTMLResponse(f"<h1>{status}</h1>", status_code=status, headers=headers)
