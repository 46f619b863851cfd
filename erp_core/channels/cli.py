"""``erp channels accounts``: add and list a tenant's channel accounts.

Secrets are read from standard input as a JSON object (``--secrets-stdin``) or prompted for
without echo; they are never accepted as options (options end up in shell history and in
``ps``), and never printed.
"""

from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING, Any

import click

if TYPE_CHECKING:
    from erp_core.cli import Ctx


def _ctx() -> Ctx:
    from erp_core.cli import Ctx

    return click.get_current_context().ensure_object(Ctx)


@click.group("channels")
def channels_group() -> None:
    """Sales and payment channels: shops, payment accounts."""


@channels_group.group("accounts")
def accounts_group() -> None:
    """A tenant's channel accounts (shops and payment accounts)."""


def _json_object(text: str, what: str) -> dict[str, Any]:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        # the position only: the text may hold secrets
        raise click.ClickException(
            f"{what} is not valid JSON (line {exc.lineno}, column {exc.colno})"
        ) from None
    if not isinstance(data, dict):
        raise click.ClickException(f"{what} must be a JSON object")
    return data


@accounts_group.command("add")
@click.option("--tenant", "slug", required=True, help="Tenant the account belongs to.")
@click.option("--connector", required=True, help="Installed connector, e.g. tmall or alipay.")
@click.option("--shop-id", required=True, help="The platform's shop id, or the app id.")
@click.option("--name", required=True, help="Display name.")
@click.option("--app-key", default="", help="The app key (not secret).")
@click.option("--config", "config_json", default="{}", help="Non-secret settings, JSON object.")
@click.option(
    "--secrets-stdin",
    is_flag=True,
    help='Read the secrets from standard input as a JSON object ({"app_secret": "..."}).',
)
def add(
    slug: str,
    connector: str,
    shop_id: str,
    name: str,
    app_key: str,
    config_json: str,
    secrets_stdin: bool,
) -> None:
    """Add a channel account; its secrets are prompted for (no echo) or read from stdin."""
    from erp_core.channels import service
    from erp_core.channels.crypto import CryptoError
    from erp_core.channels.errors import AccountError

    c = _ctx()
    config = _json_object(config_json, "--config")
    try:
        cls = service.connector_class(c.registry, connector)
        if secrets_stdin:
            secrets = _json_object(sys.stdin.read(), "the secrets on standard input")
        else:
            secrets = {}
            for f in cls.secret_fields:
                label = f.title + ("" if f.required else " (optional, Enter to skip)")
                value = click.prompt(
                    label,
                    hide_input=True,
                    default="" if not f.required else None,
                    show_default=False,
                )
                if value:
                    secrets[f.name] = value
        with c.tenant(slug) as (s, _tenant):
            account = service.create_account(
                s,
                c.registry,
                c.settings,
                connector=connector,
                shop_id=shop_id,
                name=name,
                app_key=app_key,
                config=config,
                secrets=secrets,
                actor="cli",
            )
            shown = f"{account.id} ({account.connector}:{account.shop_id})"
            fields = ", ".join(account.secret_names) or "none"
    except (AccountError, CryptoError) as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"channel account {shown} added to {slug}; secret fields set: {fields}")


@accounts_group.command("tokens")
@click.argument("account_id", type=int)
@click.option("--tenant", "slug", required=True, help="Tenant the account belongs to.")
@click.option(
    "--stdin",
    "from_stdin",
    is_flag=True,
    help='Read {"access_token": ..., "expires_at": ..., "refresh_token": ...} from stdin.',
)
def tokens(account_id: int, slug: str, from_stdin: bool) -> None:
    """Store the tokens the platform issued (prompted without echo, or JSON on stdin)."""
    from datetime import datetime

    from erp_core.channels import service
    from erp_core.channels.crypto import CryptoError
    from erp_core.channels.errors import AccountError
    from erp_core.channels.interfaces import TokenSet

    if from_stdin:
        data = _json_object(sys.stdin.read(), "the tokens on standard input")
    else:
        data = {"access_token": click.prompt("Access token", hide_input=True)}
        exp = click.prompt("Expires at (ISO date-time, Enter: unknown)", default="")
        if exp:
            data["expires_at"] = exp
        refresh = click.prompt(
            "Refresh token (Enter to keep)", hide_input=True, default="", show_default=False
        )
        if refresh:
            data["refresh_token"] = refresh
    unknown = sorted(
        set(data) - {"access_token", "expires_at", "refresh_token", "refresh_expires_at"}
    )
    if unknown:
        raise click.ClickException(f"unknown field(s) {', '.join(unknown)}")

    def when(name: str) -> datetime | None:
        value = data.get(name)
        if value in (None, ""):
            return None
        try:
            parsed = datetime.fromisoformat(str(value))
        except ValueError:
            raise click.ClickException(f"{name} must be an ISO date-time") from None
        if parsed.tzinfo is None:
            raise click.ClickException(f"{name} must carry a UTC offset (e.g. +08:00)")
        return parsed

    access = data.get("access_token")
    refresh_token = data.get("refresh_token")
    if not isinstance(access, str) or not access.strip():
        raise click.ClickException("access_token must be non-empty text")
    if refresh_token is not None and (not isinstance(refresh_token, str) or not refresh_token):
        raise click.ClickException("refresh_token must be non-empty text")
    c = _ctx()
    try:
        with c.tenant(slug) as (s, _tenant):
            account = service.get_account(s, account_id)
            service.set_tokens(
                s,
                c.settings,
                account,
                TokenSet(
                    access_token=access,
                    expires_at=when("expires_at"),
                    refresh_token=refresh_token,
                    refresh_expires_at=when("refresh_expires_at"),
                ),
                actor="cli",
            )
            exp_at = account.access_token_expires_at
    except (AccountError, CryptoError) as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(
        f"tokens of channel account {account_id} stored; the access token expires "
        f"{exp_at.isoformat() if exp_at else 'at an unknown time'}"
    )


@accounts_group.command("refresh")
@click.argument("account_id", type=int)
@click.option("--tenant", "slug", required=True, help="Tenant the account belongs to.")
def refresh(account_id: int, slug: str) -> None:
    """Exchange the account's refresh token for new tokens now."""
    from erp_core.channels import service
    from erp_core.channels.errors import AccountError

    c = _ctx()
    try:
        with c.tenant(slug) as (s, _tenant):
            account = service.get_account(s, account_id)
            service.refresh_tokens(s, c.registry, c.settings, account, force=True)
            exp_at = account.access_token_expires_at
    except AccountError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(
        f"tokens of channel account {account_id} refreshed; the access token expires "
        f"{exp_at.isoformat() if exp_at else 'at an unknown time'}"
    )


@accounts_group.command("list")
@click.option("--tenant", "slug", required=True)
@click.option("--all", "show_all", is_flag=True, help="Include inactive accounts.")
def list_(slug: str, show_all: bool) -> None:
    """List a tenant's channel accounts (never their secrets)."""
    from erp_core.channels import service

    c = _ctx()
    with c.tenant(slug) as (s, _tenant):
        rows = service.list_accounts(s, active=None if show_all else True)
        lines = []
        for r in rows:
            token = service.token_status(r)
            exp = token["access_token_expires_at"]
            tok = "-" if not token["access_token_set"] else (exp.isoformat() if exp else "set")
            lines.append(
                f"{r.id:>6}  {r.connector:<12} {r.kind:<8} {r.shop_id:<20} "
                f"{'active' if r.active else 'inactive':<9} {tok:<26} {r.name}"
                f"  [secrets: {', '.join(r.secret_names) or 'none'}]"
            )
    if not lines:
        click.echo("(no channel accounts)")
        return
    click.echo(
        f"{'ID':>6}  {'CONNECTOR':<12} {'KIND':<8} {'SHOP':<20} {'STATE':<9} "
        f"{'TOKEN EXPIRES':<26} NAME"
    )
    for line in lines:
        click.echo(line)


def _when(value: str | None, what: str, zone: str) -> Any:
    """An ISO date or date-time; without an offset it is read in the tenant's time zone."""
    from datetime import datetime
    from zoneinfo import ZoneInfo

    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise click.ClickException(
            f"{what} must be a date or date-time like 2026-11-01 or 2026-11-01T08:00+08:00"
        ) from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=ZoneInfo(zone))
    return parsed


@channels_group.command("sync")
@click.argument("account_id", type=int)
@click.option("--tenant", "slug", required=True, help="Tenant the account belongs to.")
@click.option("--since", default=None, help="Fetch from this time (a backfill); default: cursor.")
@click.option("--until", default=None, help="Fetch up to this time; default: now.")
@click.option(
    "--stream",
    type=click.Choice(["orders", "refunds"]),
    default="orders",
    show_default=True,
)
def sync(account_id: int, slug: str, since: str | None, until: str | None, stream: str) -> None:
    """Fetch a shop's orders or refunds (a backfill with --since) and deliver them.

    Dates without an offset are read in the tenant's time zone. Safe to interrupt and run
    again: it resumes from the last committed page and never delivers the same version twice.
    """
    from typing import cast

    from erp_core.channels import sync as engine

    c = _ctx()
    with c.tenant(slug) as (_s, tenant):
        tenant_id, zone = tenant.id, tenant.timezone or "UTC"
    start = _when(since, "--since", zone)
    end = _when(until, "--until", zone)
    if start is not None and end is not None and end <= start:
        raise click.ClickException("--until must be after --since")
    tty = sys.stdout.isatty()
    bar: Any = None

    def progress(p: engine.Progress) -> None:
        nonlocal bar
        if tty:
            if bar is None:
                bar = click.progressbar(length=p.windows_total, label=f"{stream} windows")
                bar.__enter__()
            if p.window_done:
                bar.update(1)
            return
        if p.window_done:
            r = p.result
            click.echo(
                f"window {p.window_index + 1}/{p.windows_total} "
                f"[{p.window.start.isoformat()} .. {p.window.end.isoformat()}) done; "
                f"pages {r.pages}, new {r.new}, changed {r.changed}"
            )

    try:
        result = engine.run(
            c.db,
            c.registry,
            c.settings,
            tenant_id,
            account_id,
            cast(engine.Stream, stream),
            since=start,
            until=end,
            progress=progress,
        )
    except engine.SyncError as exc:
        if bar is not None:
            bar.__exit__(None, None, None)
        done = f" ({exc.result.summary()})" if exc.result is not None else ""
        raise click.ClickException(f"sync failed: {exc}{done}") from None
    if bar is not None:
        bar.__exit__(None, None, None)
    click.echo(
        f"synced {stream} of channel account {account_id}: {result.windows} window(s), "
        f"{result.pages} page(s); new {result.new}, changed {result.changed}, "
        f"unchanged {result.unchanged + result.stale}; synced until "
        f"{result.synced_until.isoformat() if result.synced_until else '-'}"
    )
