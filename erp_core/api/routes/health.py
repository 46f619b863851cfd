"""Liveness and readiness probes."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from sqlalchemy import text

from erp_core.auth.deps import public

router = APIRouter(tags=["health"], dependencies=[Depends(public)])


@router.get("/healthz")
def healthz() -> dict[str, str]:
    """The process is up."""
    return {"status": "ok"}


@router.get("/readyz")
def readyz(request: Request) -> JSONResponse:
    """The database and the task broker are reachable."""
    checks: dict[str, Any] = {}
    ok = True
    try:
        with request.app.state.db.engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        checks["database"] = "ok"
    except Exception as exc:
        ok = False
        checks["database"] = f"error: {type(exc).__name__}"
    try:
        from erp_core.tasks.app import broker_ping

        broker_ping(request.app.state.settings)
        checks["broker"] = "ok"
    except Exception as exc:
        ok = False
        checks["broker"] = f"error: {type(exc).__name__}"
    return JSONResponse(
        {"status": "ok" if ok else "unavailable", "checks": checks}, status_code=200 if ok else 503
    )
