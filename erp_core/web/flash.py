"""Flash messages: a note for the next page ("Role saved."), shown once.

They travel in a signed cookie (``erp_flash``), so no server-side state is needed, and are kept
untranslated (msgid and parameters) so that the page shows them in its own language. The next
page rendered with :func:`erp_core.web.templating.render` shows them and deletes the cookie.
"""

from __future__ import annotations

import json
from typing import Any, Literal

from fastapi import Request
from fastapi.responses import RedirectResponse, Response
from itsdangerous import BadSignature, URLSafeSerializer

from erp_core.i18n import Message

FLASH_COOKIE = "erp_flash"
Level = Literal["success", "info", "warning", "error"]
LEVELS = ("success", "info", "warning", "error")
MAX_MESSAGES = 5


def _serializer(request: Request) -> URLSafeSerializer:
    return URLSafeSerializer(request.app.state.settings.secret_key, salt="erp-flash")


def _encode(message: object) -> list[Any]:
    if isinstance(message, Message):
        return [message.msgid, {k: str(v) for k, v in message.params.items()}]
    return [str(message), {}]


def flash(request: Request, response: Response, message: object, level: Level = "success") -> None:
    """Add ``message`` to the flash messages carried by ``response`` (usually a redirect)."""
    pending: list[list[Any]] = request.state.__dict__.setdefault("erp_flash_out", [])
    pending.append([level, *_encode(message)])
    value = _serializer(request).dumps(pending[-MAX_MESSAGES:])
    response.set_cookie(
        FLASH_COOKIE,
        value,
        httponly=True,
        samesite="lax",
        secure=request.app.state.settings.secure_cookies,
        path="/",
    )


def redirect(
    request: Request, url: str, message: object | None = None, level: Level = "success"
) -> Response:
    """Send the browser to ``url`` with a flash message if given: a 303 redirect, or for an
    htmx request an ``HX-Redirect`` (htmx would otherwise follow the redirect itself and
    swap the next page into the element that sent the form)."""
    resp: Response
    if request.headers.get("hx-request") == "true":
        resp = Response(status_code=200, headers={"HX-Redirect": url})
    else:
        resp = RedirectResponse(url, status_code=303)
    if message is not None:
        flash(request, resp, message, level)
    return resp


def take(request: Request) -> list[tuple[str, Message]]:
    """The flash messages the request carries (each is read once: the caller deletes the
    cookie). A tampered or unreadable cookie is ignored."""
    raw = request.cookies.get(FLASH_COOKIE)
    if not raw:
        return []
    try:
        data = _serializer(request).loads(raw)
    except (BadSignature, ValueError, json.JSONDecodeError):
        return []
    out: list[tuple[str, Message]] = []
    if not isinstance(data, list):
        return out
    for item in data[:MAX_MESSAGES]:
        if (
            isinstance(item, list)
            and len(item) == 3
            and item[0] in LEVELS
            and isinstance(item[1], str)
            and isinstance(item[2], dict)
        ):
            try:
                out.append((item[0], Message(item[1], **item[2])))
            except (KeyError, ValueError, TypeError):
                out.append((item[0], Message(item[1])))
    return out
