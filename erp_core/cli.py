"""The ``erp`` command line."""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import click
from alembic.script.revision import RevisionError
from alembic.util import CommandError as AlembicCommandError
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from erp_core.auth.security import PasswordPolicyError
from erp_core.auth.service import AuthError
from erp_core.db.migrate import MigrationError
from erp_core.db.session import Database, bind_tenant
from erp_core.plugins.registry import DependencyError, PluginRegistry
from erp_core.settings import Settings, SettingsError, load_settings
from erp_core.tenancy.models import Tenant
from erp_core.tenancy.service import TenantError

EXPECTED = (
    AuthError,
    TenantError,
    DependencyError,
    PasswordPolicyError,
    SettingsError,
    MigrationError,
)


class Ctx:
    """Lazily built settings, database and registry for one command."""

    def __init__(self) -> None:
        self._settings: Settings | None = None
        self._db: Database | None = None
        self._registry: PluginRegistry | None = None

    @property
    def settings(self) -> Settings:
        if self._settings is None:
            self._settings = load_settings()
        return self._settings

    @property
    def db(self) -> Database:
        if self._db is None:
            self._db = Database(self.settings.resolved_database_url())
            self._db.registry = self.registry
        return self._db

    @property
    def registry(self) -> PluginRegistry:
        if self._registry is None:
            self._registry = PluginRegistry.discover(self.settings.plugins or None)
        return self._registry

    @contextmanager
    def system(self) -> Iterator[Session]:
        with self.db.system_session() as s:
            yield s

    @contextmanager
    def tenant(self, slug: str) -> Iterator[tuple[Session, Tenant]]:
        """A session acting for tenant ``slug`` (one transaction, committed on success)."""
        from erp_core.tenancy.service import get_tenant

        with self.db.session() as s, s.begin():
            t = get_tenant(s, slug)
            bind_tenant(s, t.id)
            yield s, t


class ErpGroup(click.Group):
    """Turns expected errors into a one-line message and exit status 1."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except EXPECTED as exc:
            raise click.ClickException(str(exc)) from None
        except SQLAlchemyError as exc:
            msg = str(exc.__cause__ or exc).splitlines()[0]
            if "no such table" in msg or ("relation" in msg and "does not exist" in msg):
                raise click.ClickException(
                    f"the database is not migrated ({msg}); run 'erp migrate' first"
                ) from None
            raise click.ClickException(f"database error: {msg}") from None
        except (AlembicCommandError, RevisionError) as exc:
            raise click.ClickException(
                f"migration error: {exc}. If a plugin was uninstalled before its tables were "
                "removed, reinstall it, run 'erp migrate downgrade PLUGIN', then uninstall it"
            ) from None


pass_ctx = click.make_pass_decorator(Ctx, ensure=True)


@click.group(cls=ErpGroup)
@click.version_option(package_name="erp-core", prog_name="erp")
@click.option("-v", "--verbose", is_flag=True, help="Log debug output.")
def main(verbose: bool) -> None:
    """Open e-commerce ERP: kernel and plugin administration."""
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )


# --- migrations ---------------------------------------------------------------------------


@main.group(invoke_without_command=True, cls=ErpGroup)
@click.pass_context
def migrate(click_ctx: click.Context) -> None:
    """Upgrade the kernel and every installed plugin to their newest schema."""
    if click_ctx.invoked_subcommand is not None:
        return
    from erp_core.db.migrate import upgrade

    c = click_ctx.ensure_object(Ctx)
    applied = upgrade(c.settings, c.registry, c.db.engine)
    for b in c.registry.broken:
        click.echo(f"warning: plugin {b.name} skipped: {b.error}", err=True)
    click.echo(f"database is up to date ({len(applied)} revision(s) applied)")


@migrate.command("downgrade")
@click.argument("plugin")
@click.option(
    "--to",
    "target",
    default="base",
    show_default=True,
    help="Revision to go back to (default: remove the plugin's tables).",
)
@click.option("--force", is_flag=True, help="Even if some tenant has the plugin enabled.")
@pass_ctx
def migrate_downgrade(c: Ctx, plugin: str, target: str, force: bool) -> None:
    """Downgrade one plugin's migration branch alone."""
    from sqlalchemy import select

    from erp_core.db.migrate import downgrade_branch
    from erp_core.tenancy.models import Tenant, TenantPlugin

    with c.system() as s:
        users = list(
            s.scalars(
                select(Tenant.slug)
                .join(TenantPlugin, TenantPlugin.tenant_id == Tenant.id)
                .where(TenantPlugin.plugin == plugin, TenantPlugin.enabled.is_(True))
            )
        )
    if users and not force:
        raise click.ClickException(
            f"plugin {plugin} is enabled for {', '.join(users)}; disable it first or use --force"
        )
    downgrade_branch(c.settings, c.registry, c.db.engine, plugin, target)
    click.echo(f"{plugin} downgraded to {target}")


@migrate.command("revision")
@click.option("--plugin", "branch", required=True, help="Branch (plugin name, or 'core').")
@click.option("-m", "--message", required=True)
@click.option("--empty", is_flag=True, help="Do not autogenerate from the models.")
@pass_ctx
def migrate_revision(c: Ctx, branch: str, message: str, empty: bool) -> None:
    """Write a new migration for a plugin from its models (database must be up to date)."""
    from erp_core.db.migrate import new_revision

    path = new_revision(
        c.settings, c.registry, c.db.engine, branch, message, autogenerate=not empty
    )
    click.echo(f"wrote {path}")


# --- processes ----------------------------------------------------------------------------


@main.command()
@click.option("--host", default=None, help="Address to listen on (setting: host).")
@click.option("--port", default=None, type=int, help="Port to listen on (setting: port).")
@click.option("--demo", is_flag=True, help="Migrate and create the demo tenant first.")
@click.option("--no-worker", is_flag=True, help="Do not start the embedded worker.")
@pass_ctx
def serve(c: Ctx, host: str | None, port: int | None, demo: bool, no_worker: bool) -> None:
    """Run the web server (and, in embedded mode, a worker and the scheduler beside it)."""
    from contextlib import ExitStack

    import uvicorn

    from erp_core.app import create_app
    from erp_core.tasks.process import embedded_worker, exit_on_sigterm, settle_heap

    if demo:
        from erp_core.db.migrate import upgrade
        from erp_core.demo import ensure_demo

        upgrade(c.settings, c.registry, c.db.engine)
        for line in ensure_demo(c.db, c.registry, c.settings, host, port):
            click.echo(line)
    with ExitStack() as stack:
        stack.enter_context(exit_on_sigterm())
        if c.settings.run_embedded_worker and not no_worker:
            child = stack.enter_context(embedded_worker())
            click.echo(f"embedded worker and scheduler started (pid {child.pid})")
        h = host or c.settings.host
        p = port or c.settings.port
        if demo:
            from erp_core.demo import DemoPlatforms

            platforms = DemoPlatforms(c.db, c.registry, c.settings)
            stack.callback(platforms.close)
            for line in platforms.start(f"http://{'127.0.0.1' if h == '0.0.0.0' else h}:{p}"):
                click.echo(line)
        app = create_app(c.settings, registry=c.registry, db=c.db)
        settle_heap()
        click.echo(f"serving on http://{h}:{p}")
        uvicorn.run(
            app,
            host=h,
            port=p,
            log_level=c.settings.log_level.lower(),
        )


@main.command()
@click.option("--beat", is_flag=True, help="Also run the scheduler in this process.")
@click.option("--concurrency", default=2, show_default=True, type=int)
@click.option(
    "--pool",
    default="threads",
    show_default=True,
    type=click.Choice(["threads", "prefork", "solo"]),
)
@click.option(
    "--visibility-timeout",
    default=None,
    type=click.FloatRange(min=0.5),
    help="Seconds after which a task taken by a worker that died is delivered again "
    "(default 3600).",
)
@click.option("--parent-pid", default=None, type=int, hidden=True)
@pass_ctx
def worker(
    c: Ctx,
    beat: bool,
    concurrency: int,
    pool: str,
    visibility_timeout: float | None,
    parent_pid: int | None,
) -> None:
    """Run a Celery worker for every installed plugin's tasks."""
    from erp_core.tasks.process import run_worker

    run_worker(
        c.settings,
        c.db,
        c.registry,
        beat=beat,
        concurrency=concurrency,
        pool=pool,
        visibility_timeout=visibility_timeout,
        parent_pid=parent_pid,
    )


@main.command()
@pass_ctx
def beat(c: Ctx) -> None:
    """Run the scheduler (periodic tasks of every installed plugin)."""
    from erp_core.tasks.process import run_beat

    run_beat(c.settings, c.registry)


# --- tenants, users, tokens ---------------------------------------------------------------


@main.group(cls=ErpGroup)
def tenants() -> None:
    """Manage tenants."""


@tenants.command("create")
@click.argument("slug")
@click.option("--name", required=True, help="Display name of the merchant.")
@click.option("--currency", default=None, help="Default: setting default_currency (CNY).")
@click.option("--timezone", default=None, help="Default: setting default_timezone.")
@click.option("--locale", default=None, help="zh_CN or en. Default: setting default_locale.")
@pass_ctx
def tenants_create(
    c: Ctx, slug: str, name: str, currency: str | None, timezone: str | None, locale: str | None
) -> None:
    """Create a tenant with the default roles."""
    from erp_core.tenancy.service import create_tenant

    s = c.settings
    with c.system() as session:
        t = create_tenant(
            session,
            slug,
            name,
            currency=currency or s.default_currency,
            timezone=timezone or s.default_timezone,
            locale=locale or s.default_locale,
            registry=c.registry,
        )
    click.echo(f"tenant {t.slug} created (id {t.id})")


@tenants.command("list")
@pass_ctx
def tenants_list(c: Ctx) -> None:
    """List tenants."""
    from sqlalchemy import select

    from erp_core.tenancy.models import Tenant

    with c.system() as s:
        for t in s.scalars(select(Tenant).order_by(Tenant.slug)):
            click.echo(f"{t.slug}\t{t.name}\t{t.currency}\t{t.timezone}\t{t.locale}")


@main.group(cls=ErpGroup)
def users() -> None:
    """Manage users."""


@users.command("create")
@click.argument("email")
@click.option("--tenant", "slug", required=True, help="Tenant the user joins.")
@click.option("--role", default="owner", show_default=True)
@click.option("--name", default="")
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input.")
@pass_ctx
def users_create(c: Ctx, email: str, slug: str, role: str, name: str, password_stdin: bool) -> None:
    """Create a user (or add an existing one) as a member of a tenant."""
    from erp_core.auth import service

    with c.tenant(slug) as (s, tenant):
        user = service.get_user(s, email)
        if user is None:
            if password_stdin:
                password = sys.stdin.readline().rstrip("\n")
            else:
                password = click.prompt("Password", hide_input=True, confirmation_prompt=True)
            user = service.create_user(s, email, password, name)
        service.add_member(s, tenant, user, role)
        from erp_core.audit.service import record

        record(
            s,
            "user.added",
            tenant_id=tenant.id,
            actor="cli",
            target=user.email,
            details={"role": role},
        )
    click.echo(f"user {user.email} is {role} of {slug}")


@main.group(cls=ErpGroup)
def tokens() -> None:
    """Manage API tokens."""


@tokens.command("create")
@click.option("--tenant", "slug", required=True)
@click.option("--user", "email", required=True)
@click.option("--name", default="cli", show_default=True)
@click.option(
    "--scope",
    "scopes",
    multiple=True,
    help="Permission pattern the token may use (repeatable). Default: '*'.",
)
@pass_ctx
def tokens_create(c: Ctx, slug: str, email: str, name: str, scopes: tuple[str, ...]) -> None:
    """Create an API token and print it once."""
    from erp_core.audit.service import record
    from erp_core.auth import service

    with c.tenant(slug) as (s, tenant):
        user = service.get_user(s, email)
        if user is None:
            raise AuthError(f"no user {email}")
        row, token = service.create_token(
            s,
            tenant,
            user,
            name=name,
            scopes=list(scopes) or ["*"],
            known_permissions=[p.name for p in c.registry.permissions()],
        )
        record(
            s,
            "token.created",
            tenant_id=tenant.id,
            actor="cli",
            actor_user_id=user.id,
            target=row.name,
            details={"token_id": row.id, "scopes": row.scopes},
        )
    click.echo(token)


# --- plugins ------------------------------------------------------------------------------


@main.group(cls=ErpGroup)
def plugins() -> None:
    """List, enable and disable plugins."""


@plugins.command("list")
@pass_ctx
def plugins_list(c: Ctx) -> None:
    """Every installed plugin, connector and theme, and the tenants that enabled it."""
    from sqlalchemy import select

    from erp_core.tenancy.models import Tenant, TenantPlugin

    with c.system() as s:
        rows = s.execute(
            select(TenantPlugin.plugin, Tenant.slug)
            .join(Tenant, Tenant.id == TenantPlugin.tenant_id)
            .where(TenantPlugin.enabled.is_(True))
            .order_by(Tenant.slug)
        ).all()
    by_plugin: dict[str, list[str]] = {}
    for plugin, slug in rows:
        by_plugin.setdefault(plugin, []).append(slug)
    click.echo(f"{'NAME':<20} {'KIND':<10} {'VERSION':<10} {'STAGE':<6} {'STATE':<8} TENANTS")
    for m in c.registry.manifests():
        enabled = by_plugin.get(m.name, [])
        click.echo(
            f"{m.name:<20} {m.kind:<10} {m.version:<10} {m.stage:<6} "
            f"{'enabled' if enabled else 'ready':<8} {','.join(enabled) or '-'}"
        )
    for b in c.registry.broken:
        kind = b.group.split(".")[-1].rstrip("s")
        click.echo(f"{b.name:<20} {kind:<10} {'?':<10} {'-':<6} {'broken':<8} {b.error}")


@plugins.command("enable")
@click.argument("name")
@click.option("--tenant", "slug", required=True)
@click.option("--with-deps", is_flag=True, help="Also enable the plugins it needs.")
@pass_ctx
def plugins_enable(c: Ctx, name: str, slug: str, with_deps: bool) -> None:
    """Enable a plugin for a tenant (takes effect at once in running processes)."""
    from erp_core.tenancy.service import enable_plugin

    with c.tenant(slug) as (s, tenant):
        newly = enable_plugin(s, c.registry, tenant, name, with_dependencies=with_deps, actor="cli")
    if newly:
        click.echo(f"enabled for {slug}: {', '.join(newly)}")
    else:
        click.echo(f"{name} was already enabled for {slug}")


@plugins.command("disable")
@click.argument("name")
@click.option("--tenant", "slug", required=True)
@pass_ctx
def plugins_disable(c: Ctx, name: str, slug: str) -> None:
    """Disable a plugin for a tenant (its data is kept)."""
    from erp_core.tenancy.service import disable_plugin

    with c.tenant(slug) as (s, tenant):
        changed = disable_plugin(s, c.registry, tenant, name, actor="cli")
    click.echo(f"disabled {name} for {slug}" if changed else f"{name} was not enabled for {slug}")


from erp_core.ledger.cli import ledger_group  # noqa: E402

main.add_command(ledger_group)

from erp_core.inventory.cli import stock_group  # noqa: E402

main.add_command(stock_group)

from erp_core.channels.cli import channels_group  # noqa: E402

main.add_command(channels_group)

from erp_core.channels.inbox import inbox_group  # noqa: E402
from erp_core.channels.scaffold import connectors_group  # noqa: E402

main.add_command(inbox_group)
main.add_command(connectors_group)


if __name__ == "__main__":
    main()
