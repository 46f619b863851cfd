"""Channel accounts: create, change, deactivate, list; write-only secrets; tokens.

Secrets go in through :func:`create_account`, :func:`update_account` and :func:`set_tokens`
and are stored encrypted (:mod:`erp_core.channels.crypto`). Nothing here returns them, except
the connector runtime's accessors :func:`account_secrets` and :func:`account_context`. Errors
and audit events name secret *fields*, never values.
"""

from __future__ import annotations

import importlib
import json
import logging
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from erp_core.audit.service import record
from erp_core.channels.crypto import CryptoError, binding, channel_box
from erp_core.channels.errors import AccountConflict, AccountError, AccountNotFound
from erp_core.channels.interfaces import (
    ChannelContext,
    Connector,
    PaymentChannel,
    SalesChannel,
    TokenSet,
)
from erp_core.channels.models import ChannelAccount
from erp_core.db.base import utcnow
from erp_core.db.session import session_tenant
from erp_core.plugins.registry import PluginRegistry
from erp_core.settings import Settings
from erp_core.tenancy.service import enabled_plugins

log = logging.getLogger(__name__)

MAX_SECRET_LEN = 16_384
MAX_CONFIG_LEN = 16_384


# --- installed connectors ----------------------------------------------------------------------


def load_connector(target: str) -> type[Connector]:
    """The class named ``module:Class``; it must subclass SalesChannel or PaymentChannel."""
    module, _, attr = target.partition(":")
    cls = getattr(importlib.import_module(module), attr)
    if not (isinstance(cls, type) and issubclass(cls, (SalesChannel, PaymentChannel))):
        raise TypeError(f"{target} is not a SalesChannel or PaymentChannel subclass")
    return cls


def connectors(registry: PluginRegistry) -> dict[str, type[Connector]]:
    """Installed connectors by name (the manifest's name); one that fails to load is logged
    and left out."""
    out: dict[str, type[Connector]] = {}
    for m in registry.manifests():
        if not m.channel:
            continue
        try:
            out[m.name] = load_connector(m.channel)
        except Exception as exc:
            log.error("connector %s failed to load: %s: %s", m.name, type(exc).__name__, exc)
    return out


def connector_class(registry: PluginRegistry, name: str) -> type[Connector]:
    known = connectors(registry)
    if name not in known:
        installed = ", ".join(sorted(known)) or "none"
        raise AccountError(f"unknown connector {name!r}; installed connectors: {installed}")
    return known[name]


# --- validation ----------------------------------------------------------------------------------


def _text(value: Any, what: str, *, max_len: int, required: bool = True) -> str:
    if not isinstance(value, str):
        raise AccountError(f"{what} must be text")
    value = value.strip()
    if required and not value:
        raise AccountError(f"{what} must not be empty")
    if len(value) > max_len:
        raise AccountError(f"{what} is longer than {max_len} characters")
    return value


def _check_config(cls: type[Connector], config: Mapping[str, Any]) -> None:
    if not isinstance(config, Mapping):
        raise AccountError("config must be an object")
    allowed = {f.name for f in cls.config_fields}
    unknown = sorted(set(config) - allowed)
    if unknown:
        raise AccountError(
            f"unknown config field(s) {', '.join(unknown)}; "
            f"{cls.__name__} accepts: {', '.join(sorted(allowed)) or 'none'}"
        )
    for k, v in config.items():
        if not isinstance(v, str | int | bool | None):
            raise AccountError(f"config field {k} must be text, a whole number or a boolean")
    missing = [f.name for f in cls.config_fields if f.required and config.get(f.name) in (None, "")]
    if missing:
        raise AccountError(f"missing required config field(s): {', '.join(missing)}")
    if len(json.dumps(dict(config))) > MAX_CONFIG_LEN:
        raise AccountError("config is too large")


def _check_secrets(cls: type[Connector], secrets: Mapping[str, Any]) -> None:
    """Names and types only: no message quotes a value."""
    if not isinstance(secrets, Mapping):
        raise AccountError("secrets must be an object of field name to text")
    allowed = {f.name for f in cls.secret_fields}
    unknown = sorted(str(k) for k in secrets if k not in allowed)
    if unknown:
        raise AccountError(
            f"unknown secret field(s) {', '.join(unknown)}; "
            f"{cls.__name__} needs: {', '.join(sorted(allowed)) or 'none'}"
        )
    for k, v in secrets.items():
        if v is None:
            continue
        if not isinstance(v, str) or not v.strip():
            raise AccountError(f"secret field {k} must be non-empty text")
        if len(v) > MAX_SECRET_LEN:
            raise AccountError(f"secret field {k} is longer than {MAX_SECRET_LEN} characters")


def _missing_secrets(cls: type[Connector], names: set[str]) -> list[str]:
    return [f.name for f in cls.secret_fields if f.required and f.name not in names]


# --- encryption ----------------------------------------------------------------------------------


def _aad(account: ChannelAccount, column: str) -> bytes:
    return binding("core_channel_account", account.tenant_id, account.id, column)


def _seal(settings: Settings, account: ChannelAccount, column: str, plaintext: str) -> str:
    return channel_box(settings, for_writing=True).encrypt(
        plaintext.encode("utf-8"), _aad(account, column)
    )


def _open(settings: Settings, account: ChannelAccount, column: str, token: str) -> str:
    try:
        return channel_box(settings).decrypt(token, _aad(account, column)).decode("utf-8")
    except CryptoError as exc:
        raise AccountError(
            f"the {column} of channel account {account.id} cannot be decrypted ({exc}); "
            "was secret_key changed? Enter the credentials again"
        ) from None


def _store_secrets(settings: Settings, account: ChannelAccount, values: Mapping[str, str]) -> None:
    clean = {k: v for k, v in sorted(values.items())}
    account.secrets = _seal(settings, account, "secrets", json.dumps(clean)) if clean else None
    account.secret_names = sorted(clean)


def account_secrets(
    session: Session, account: ChannelAccount, settings: Settings
) -> dict[str, str]:
    """The decrypted secret fields of ``account``: for the connector runtime only.

    ``session`` must act for the account's tenant (the row is re-read through it, so a caller
    can not decrypt another tenant's account).
    """
    row = session.get(ChannelAccount, account.id)
    if row is None:
        raise AccountNotFound(f"no channel account {account.id} in this tenant")
    if not row.secrets:
        return {}
    data = json.loads(_open(settings, row, "secrets", row.secrets))
    return {str(k): str(v) for k, v in data.items()}


def account_context(
    session: Session, account: ChannelAccount, settings: Settings
) -> ChannelContext:
    """The :class:`ChannelContext` a connector instance of ``account`` is built with."""
    secrets = account_secrets(session, account, settings)
    token = (
        _open(settings, account, "access_token", account.access_token)
        if account.access_token
        else None
    )
    return ChannelContext(
        account_id=account.id,
        tenant_id=account.tenant_id,
        shop_id=account.shop_id,
        app_key=account.app_key,
        config=dict(account.config or {}),
        secrets=secrets,
        access_token=token,
        base_url=str((account.config or {}).get("base_url") or "") or None,
    )


def account_refresh_token(
    session: Session, account: ChannelAccount, settings: Settings
) -> str | None:
    """The decrypted refresh token: for the connector runtime only."""
    row = session.get(ChannelAccount, account.id)
    if row is None:
        raise AccountNotFound(f"no channel account {account.id} in this tenant")
    return _open(settings, row, "refresh_token", row.refresh_token) if row.refresh_token else None


# --- accounts ------------------------------------------------------------------------------------


def _audit(
    session: Session, action: str, account: ChannelAccount, actor: str, details: dict[str, Any]
) -> None:
    record(
        session,
        action,
        tenant_id=account.tenant_id,
        actor=actor,
        target=f"{account.connector}:{account.shop_id}",
        details=details,
    )


def _flush_unique(session: Session, account: ChannelAccount) -> None:
    try:
        with session.begin_nested():
            session.flush()
    except IntegrityError:
        raise AccountConflict(
            f"this tenant already has a {account.connector} account for shop {account.shop_id!r}"
        ) from None


def create_account(
    session: Session,
    registry: PluginRegistry,
    settings: Settings,
    *,
    connector: str,
    shop_id: str,
    name: str,
    app_key: str = "",
    config: Mapping[str, Any] | None = None,
    secrets: Mapping[str, Any] | None = None,
    actor: str = "",
) -> ChannelAccount:
    """Add a channel account to the tenant bound to ``session``. The caller commits."""
    cls = connector_class(registry, connector)
    tenant_id = session_tenant(session)
    if tenant_id is None or connector not in enabled_plugins(session, tenant_id):
        raise AccountError(
            f"connector {connector!r} is not enabled for this tenant; enable it first "
            f"(erp plugins enable {connector} --tenant ..., or POST /api/v1/plugins/{connector}"
            "/enable)"
        )
    shop_id = _text(shop_id, "shop_id", max_len=128)
    name = _text(name, "name", max_len=200)
    app_key = _text(app_key, "app_key", max_len=200, required=False)
    config = {k: v for k, v in dict(config or {}).items() if v is not None}
    _check_config(cls, config)
    given = dict(secrets or {})
    _check_secrets(cls, given)
    values = {k: v for k, v in given.items() if v is not None}
    missing = _missing_secrets(cls, set(values))
    if missing:
        raise AccountError(f"missing required secret field(s): {', '.join(missing)}")
    exists = session.scalar(
        select(ChannelAccount.id).where(
            ChannelAccount.connector == connector, ChannelAccount.shop_id == shop_id
        )
    )
    if exists is not None:
        raise AccountConflict(
            f"this tenant already has a {connector} account for shop {shop_id!r} (id {exists})"
        )
    if values:
        channel_box(settings, for_writing=True)  # refuse before anything is written
    account = ChannelAccount(
        connector=connector,
        kind=cls.kind,
        name=name,
        shop_id=shop_id,
        app_key=app_key,
        config=config,
        secret_names=[],
        active=True,
    )
    session.add(account)
    _flush_unique(session, account)  # the id binds the ciphertext to this row
    _store_secrets(settings, account, values)
    _audit(
        session,
        "channel_account.created",
        account,
        actor,
        {"connector": connector, "name": name, "secret_fields": account.secret_names},
    )
    session.flush()
    log.info("channel account %s created (%s:%s)", account.id, connector, shop_id)
    return account


def update_account(
    session: Session,
    registry: PluginRegistry,
    settings: Settings,
    account: ChannelAccount,
    *,
    name: str | None = None,
    app_key: str | None = None,
    config: Mapping[str, Any] | None = None,
    secrets: Mapping[str, Any] | None = None,
    active: bool | None = None,
    actor: str = "",
) -> ChannelAccount:
    """Change an account. ``config`` replaces the keys it names (a None value removes one);
    ``secrets`` sets the fields it names (None removes one) and keeps the others."""
    cls = connector_class(registry, account.connector)
    changed: list[str] = []
    if name is not None:
        account.name = _text(name, "name", max_len=200)
        changed.append("name")
    if app_key is not None:
        account.app_key = _text(app_key, "app_key", max_len=200, required=False)
        changed.append("app_key")
    if config is not None:
        if not isinstance(config, Mapping):
            raise AccountError("config must be an object")
        merged = {**(account.config or {}), **config}
        merged = {k: v for k, v in merged.items() if v is not None}
        _check_config(cls, merged)
        account.config = merged
        changed.append("config")
    secret_fields: list[str] = []
    if secrets is not None:
        _check_secrets(cls, secrets)
        try:
            current = account_secrets(session, account, settings) if account.secrets else {}
        except AccountError:
            # unreadable (secret_key changed): the secrets given must replace them all
            log.warning("channel account %s: stored secrets unreadable, replacing", account.id)
            current = {}
        for k, v in secrets.items():
            if v is None:
                current.pop(k, None)
            else:
                current[k] = v
        missing = _missing_secrets(cls, set(current))
        if missing:
            raise AccountError(f"missing required secret field(s): {', '.join(missing)}")
        _store_secrets(settings, account, current)
        secret_fields = sorted(str(k) for k in secrets)
        changed.append("secrets")
    if active is not None and active != account.active:
        account.active = bool(active)
        changed.append("active")
    if changed:
        account.updated_at = utcnow()
        _audit(
            session,
            "channel_account.updated",
            account,
            actor,
            {"changed": changed, "secret_fields": secret_fields},
        )
        session.flush()
    return account


def deactivate_account(session: Session, account: ChannelAccount, *, actor: str = "") -> bool:
    """Stop using an account (it is kept, with its credentials). False if it was inactive."""
    if not account.active:
        return False
    account.active = False
    account.updated_at = utcnow()
    _audit(session, "channel_account.deactivated", account, actor, {})
    session.flush()
    return True


def _utc(when: datetime | None) -> datetime | None:
    return when.astimezone(UTC) if when is not None else None


def set_tokens(
    session: Session,
    settings: Settings,
    account: ChannelAccount,
    tokens: TokenSet,
    *,
    actor: str = "",
) -> None:
    """Store tokens a platform issued (a None ``refresh_token`` keeps the current one)."""
    for when in (tokens.expires_at, tokens.refresh_expires_at):
        if when is not None and when.tzinfo is None:
            raise AccountError("token expiry times must be timezone-aware")
    if not tokens.access_token:
        raise AccountError("access_token must not be empty")
    account.access_token = _seal(settings, account, "access_token", tokens.access_token)
    account.access_token_expires_at = _utc(tokens.expires_at)
    if tokens.refresh_token is not None:
        account.refresh_token = _seal(settings, account, "refresh_token", tokens.refresh_token)
        account.refresh_token_expires_at = _utc(tokens.refresh_expires_at)
    account.updated_at = utcnow()
    _audit(
        session,
        "channel_account.tokens_set",
        account,
        actor,
        {"expires_at": tokens.expires_at.isoformat() if tokens.expires_at else None},
    )
    session.flush()


def get_account(session: Session, account_id: int) -> ChannelAccount:
    account = session.get(ChannelAccount, account_id)
    if account is None:
        raise AccountNotFound(f"no channel account {account_id} in this tenant")
    return account


def list_accounts(
    session: Session,
    *,
    connector: str | None = None,
    active: bool | None = None,
    after_id: int | None = None,
    limit: int | None = None,
) -> list[ChannelAccount]:
    """The tenant's accounts in id order."""
    stmt = select(ChannelAccount).order_by(ChannelAccount.id)
    if connector is not None:
        stmt = stmt.where(ChannelAccount.connector == connector)
    if active is not None:
        stmt = stmt.where(ChannelAccount.active.is_(active))
    if after_id is not None:
        stmt = stmt.where(ChannelAccount.id > after_id)
    if limit is not None:
        stmt = stmt.limit(limit)
    return list(session.scalars(stmt))


def token_status(account: ChannelAccount, now: datetime | None = None) -> dict[str, Any]:
    """What may be shown about the tokens: whether set, and when they expire."""
    now = now or utcnow()
    exp = account.access_token_expires_at
    return {
        "access_token_set": account.access_token is not None,
        "access_token_expires_at": exp,
        "access_token_expired": exp is not None and exp <= now,
        "refresh_token_set": account.refresh_token is not None,
        "refresh_token_expires_at": account.refresh_token_expires_at,
    }


# --- token refresh -------------------------------------------------------------------------------

#: Refresh an access token this long before it expires (clocks and slow calls).
REFRESH_MARGIN_SECONDS = 300


class TokenRefreshError(AccountError):
    """The account's tokens could not be refreshed; the merchant must authorize it again."""


def needs_refresh(account: ChannelAccount, now: datetime | None = None) -> bool:
    """True when the access token is missing or expires within the margin and a refresh
    token exists (accounts without tokens never need one)."""
    if account.refresh_token is None:
        return False
    exp = account.access_token_expires_at
    if account.access_token is None:
        return True
    if exp is None:
        return False
    if exp.tzinfo is None:  # SQLite hands naive UTC back
        exp = exp.replace(tzinfo=UTC)
    return exp - timedelta(seconds=REFRESH_MARGIN_SECONDS) <= (now or utcnow())


def refresh_tokens(
    session: Session,
    registry: PluginRegistry,
    settings: Settings,
    account: ChannelAccount,
    *,
    refused_token: str | None = None,
    force: bool = False,
) -> ChannelContext:
    """Exchange the account's refresh token for new tokens, store them, return the new context.

    Without ``force`` only a token that :func:`needs_refresh` is exchanged; ``refused_token``
    (the access token the platform just refused) exchanges it unless another worker already
    replaced it. Runs in the caller's transaction (the caller commits). On PostgreSQL the
    account row is locked first, so two workers refreshing at once exchange the token once:
    the second finds the fresh token and uses it.
    """
    if session.get_bind().dialect.name == "postgresql":
        session.execute(
            select(ChannelAccount.id).where(ChannelAccount.id == account.id).with_for_update()
        )
        session.refresh(account)
    if not force:
        current = account_context(session, account, settings)
        if refused_token is not None:
            if current.access_token not in (None, refused_token):
                return current  # refreshed meanwhile by another worker
        elif not needs_refresh(account):
            return current
    refresh = account_refresh_token(session, account, settings)
    if not refresh:
        raise TokenRefreshError(
            f"channel account {account.id} has no refresh token; authorize it again"
        )
    cls = connector_class(registry, account.connector)
    conn = cls(account_context(session, account, settings))
    try:
        tokens = conn.refresh_token(refresh)
    except NotImplementedError:
        raise TokenRefreshError(f"connector {account.connector!r} cannot refresh tokens") from None
    except Exception as exc:  # the platform refused: say what kind, never the token
        raise TokenRefreshError(
            f"channel account {account.id}: the platform refused the token refresh "
            f"({type(exc).__name__}); authorize the account again"
        ) from None
    set_tokens(session, settings, account, tokens, actor="system:token-refresh")
    log.info("channel account %s: tokens refreshed", account.id)
    return account_context(session, account, settings)
