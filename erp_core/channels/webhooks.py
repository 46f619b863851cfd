"""``POST /hooks/{connector}/{account_id}``: where platforms push their messages.

The route is public (``Depends(public)``): platforms have no session and no API token, so it
never resolves a principal, and the CSRF check (which only runs for a session principal)
never applies. What authenticates a message is the connector's verification of the platform's
signature with the account's secret; until that passed, nothing is written. See
``docs/connectors.md`` ("The inbox").
"""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from erp_core.auth.deps import public
from erp_core.channels import inbox

router = APIRouter(tags=["inbox"])


class _TooLarge(Exception):
    pass


async def _body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise _TooLarge
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise _TooLarge
        chunks.append(chunk)
    return b"".join(chunks)


@router.post(
    "/hooks/{connector}/{account_id}",
    dependencies=[Depends(public)],
    include_in_schema=False,
)
async def receive(request: Request, connector: str, account_id: str) -> Response:
    """Verify, store, process; answer as the platform's protocol requires."""
    try:
        body = await _body(request, inbox.MAX_BODY)
    except _TooLarge:
        return Response("payload too large", status_code=413, media_type="text/plain")
    state = request.app.state
    got = await run_in_threadpool(
        inbox.receive,
        state.db,
        state.registry,
        state.settings,
        connector=connector,
        account_id=account_id,
        headers=dict(request.headers),
        body=body,
        query=dict(request.query_params),
    )
    reply = got.reply
    return Response(reply.body, status_code=reply.status, media_type=reply.content_type)
