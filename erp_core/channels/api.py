"""JSON API of channel accounts, under ``/api/v1/channels/accounts``.

Secrets are write-only: they go in with ``POST`` and ``PATCH`` and never come out; responses
say which secret fields are set and when the tokens expire. Errors are problem documents: 422
for invalid input (unknown connector, missing secret field), 409 for a shop the tenant already
has, 404 for ids of another tenant.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, ConfigDict, Field

from erp_core.api.params import MAX_ID, Id
from erp_core.auth.deps import DbSession, require
from erp_core.auth.principal import Principal
from erp_core.channels import service
from erp_core.channels.models import ChannelAccount

router = APIRouter(prefix="/channels", tags=["channels"])

READ = Depends(require("core.channels.read"))
MANAGE = Depends(require("core.channels.manage"))

ConfigValue = str | int | bool | None
SecretValue = str | None


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


class AccountIn(_In):
    connector: str = Field(min_length=1, max_length=40, description="an installed connector")
    shop_id: str = Field(min_length=1, max_length=128, description="shop id or app id")
    name: str = Field(min_length=1, max_length=200)
    app_key: str = Field(default="", max_length=200)
    config: dict[str, ConfigValue] = Field(default_factory=dict)
    secrets: dict[str, SecretValue] = Field(
        default_factory=dict,
        description="secret fields (write-only: stored encrypted, never returned)",
    )


class AccountPatch(_In):
    name: str | None = Field(default=None, min_length=1, max_length=200)
    app_key: str | None = Field(default=None, max_length=200)
    config: dict[str, ConfigValue] | None = Field(
        default=None, description="keys to set; a null value removes the key"
    )
    secrets: dict[str, SecretValue] | None = Field(
        default=None,
        description="secret fields to set (a null value removes one); the others are kept",
    )
    active: bool | None = None


class TokensIn(_In):
    access_token: str = Field(min_length=1, max_length=4096, description="write-only")
    expires_at: datetime | None = Field(default=None, description="timezone-aware")
    refresh_token: str | None = Field(
        default=None, min_length=1, max_length=4096, description="write-only; null keeps it"
    )
    refresh_expires_at: datetime | None = None


class AccountOut(BaseModel):
    id: int
    connector: str
    kind: str
    name: str
    shop_id: str
    app_key: str
    config: dict[str, Any]
    secret_fields_set: list[str] = Field(description="names of the secret fields entered")
    access_token_set: bool
    access_token_expires_at: datetime | None
    access_token_expired: bool
    refresh_token_set: bool
    refresh_token_expires_at: datetime | None
    active: bool
    created_at: datetime
    updated_at: datetime


class AccountPage(BaseModel):
    items: list[AccountOut]
    next_after_id: int | None


def out(account: ChannelAccount) -> AccountOut:
    """The public view of an account: never a secret, nor a ciphertext."""
    return AccountOut(
        id=account.id,
        connector=account.connector,
        kind=account.kind,
        name=account.name,
        shop_id=account.shop_id,
        app_key=account.app_key,
        config=dict(account.config or {}),
        secret_fields_set=list(account.secret_names or []),
        active=account.active,
        created_at=account.created_at,
        updated_at=account.updated_at,
        **service.token_status(account),
    )


def _actor(p: Principal) -> str:
    return p.email if p.via != "token" else f"{p.email} via {p.label}"


@router.get("/accounts", response_model=AccountPage)
def list_accounts(
    db: DbSession,
    p: Principal = READ,
    connector: str | None = Query(default=None, max_length=40),
    active: bool | None = None,
    after_id: int | None = Query(default=None, ge=1, le=MAX_ID),
    limit: int = Query(default=50, ge=1, le=500),
) -> AccountPage:
    """The tenant's channel accounts in id order; page with ``next_after_id``."""
    rows = service.list_accounts(
        db, connector=connector, active=active, after_id=after_id, limit=limit + 1
    )
    more = len(rows) > limit
    rows = rows[:limit]
    return AccountPage(
        items=[out(r) for r in rows], next_after_id=rows[-1].id if more and rows else None
    )


@router.post("/accounts", response_model=AccountOut, status_code=201)
def create_account(
    body: AccountIn, request: Request, db: DbSession, p: Principal = MANAGE
) -> AccountOut:
    """Add a shop or payment account; ``secrets`` must hold the connector's required fields."""
    account = service.create_account(
        db,
        request.app.state.registry,
        request.app.state.settings,
        connector=body.connector,
        shop_id=body.shop_id,
        name=body.name,
        app_key=body.app_key,
        config=body.config,
        secrets=body.secrets,
        actor=_actor(p),
    )
    db.commit()
    return out(account)


@router.get("/accounts/{channel_account_id}", response_model=AccountOut)
def get_account(channel_account_id: Id, db: DbSession, p: Principal = READ) -> AccountOut:
    return out(service.get_account(db, channel_account_id))


@router.patch("/accounts/{channel_account_id}", response_model=AccountOut)
def update_account(
    channel_account_id: Id,
    body: AccountPatch,
    request: Request,
    db: DbSession,
    p: Principal = MANAGE,
) -> AccountOut:
    """Change an account; secrets named in ``secrets`` are replaced, the others kept."""
    account = service.get_account(db, channel_account_id)
    service.update_account(
        db,
        request.app.state.registry,
        request.app.state.settings,
        account,
        name=body.name,
        app_key=body.app_key,
        config=body.config,
        secrets=body.secrets,
        active=body.active,
        actor=_actor(p),
    )
    db.commit()
    return out(account)


@router.put("/accounts/{channel_account_id}/tokens", response_model=AccountOut)
def set_tokens(
    channel_account_id: Id,
    body: TokensIn,
    request: Request,
    db: DbSession,
    p: Principal = MANAGE,
) -> AccountOut:
    """Store the tokens the platform issued when the merchant authorized the app (Taobao's
    session key, say): write-only, answered with their expiry only."""
    from erp_core.channels.interfaces import TokenSet

    account = service.get_account(db, channel_account_id)
    service.set_tokens(
        db,
        request.app.state.settings,
        account,
        TokenSet(
            access_token=body.access_token,
            expires_at=body.expires_at,
            refresh_token=body.refresh_token,
            refresh_expires_at=body.refresh_expires_at,
        ),
        actor=_actor(p),
    )
    db.commit()
    return out(account)


@router.post("/accounts/{channel_account_id}/refresh", response_model=AccountOut)
def refresh_tokens(
    channel_account_id: Id, request: Request, db: DbSession, p: Principal = MANAGE
) -> AccountOut:
    """Exchange the refresh token for new tokens now (the sync does it when needed)."""
    account = service.get_account(db, channel_account_id)
    service.refresh_tokens(
        db, request.app.state.registry, request.app.state.settings, account, force=True
    )
    db.commit()
    return out(account)


@router.post("/accounts/{channel_account_id}/deactivate", response_model=AccountOut)
def deactivate_account(channel_account_id: Id, db: DbSession, p: Principal = MANAGE) -> AccountOut:
    """Stop using an account (it is kept; ``PATCH`` with ``active: true`` resumes it)."""
    account = service.get_account(db, channel_account_id)
    if service.deactivate_account(db, account, actor=_actor(p)):
        db.commit()
    return out(account)
