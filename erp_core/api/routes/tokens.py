"""API tokens of the current tenant."""

from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter, Depends, HTTPException, Request
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select

from erp_core.api.params import Id
from erp_core.auth import admin
from erp_core.auth.deps import DbSession, require
from erp_core.auth.models import ApiToken
from erp_core.auth.principal import Principal

router = APIRouter(prefix="/tokens", tags=["tokens"])


class TokenOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: int
    name: str
    user_id: int
    scopes: list[str]
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None
    last_used_at: datetime | None


class TokenCreated(TokenOut):
    token: str = Field(description="the secret; shown once, store it now")


class TokenIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=200)
    scopes: list[str] = Field(default_factory=lambda: ["*"])
    expires_at: datetime | None = None


@router.get("", response_model=list[TokenOut])
def list_tokens(
    db: DbSession, p: Principal = Depends(require("core.tokens.read"))
) -> list[ApiToken]:
    return list(db.scalars(select(ApiToken).order_by(ApiToken.id.desc())))


@router.post("", response_model=TokenCreated, status_code=201)
def create_token(
    body: TokenIn,
    request: Request,
    db: DbSession,
    p: Principal = Depends(require("core.tokens.manage")),
) -> TokenCreated:
    """Create a token for the caller. Its permissions never exceed the caller's role."""
    row, secret = admin.issue_token(
        db,
        p,
        name=body.name,
        scopes=body.scopes,
        known=request.app.state.known_permissions,
        expires_at=body.expires_at,
    )
    db.commit()
    return TokenCreated.model_validate(
        {**TokenOut.model_validate(row).model_dump(), "token": secret}
    )


@router.delete("/{token_id}", status_code=204)
def revoke_token(
    token_id: Id, db: DbSession, p: Principal = Depends(require("core.tokens.manage"))
) -> None:
    row = db.get(ApiToken, token_id)
    if row is None:
        raise HTTPException(404, f"no token {token_id} in this tenant")
    if admin.revoke_token(db, p, row):
        db.commit()
