"""``erp ledger``: export the books, seed the chart of accounts."""

from __future__ import annotations

import datetime
import sys
from typing import TYPE_CHECKING

import click

if TYPE_CHECKING:
    from erp_core.cli import Ctx


def _ctx() -> Ctx:
    from erp_core.cli import Ctx

    return click.get_current_context().ensure_object(Ctx)


@click.group("ledger")
def ledger_group() -> None:
    """The double-entry ledger: export, chart of accounts."""


@ledger_group.command("export")
@click.option("--tenant", "slug", required=True, help="Tenant whose ledger to export.")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["beancount"]),
    default="beancount",
    show_default=True,
)
@click.option(
    "--until",
    type=click.DateTime(formats=["%Y-%m-%d"]),
    default=None,
    help="Last date to include (YYYY-MM-DD); default: everything.",
)
def export(slug: str, fmt: str, until: datetime.datetime | None) -> None:
    """Write the tenant's ledger to standard output (a file `bean-check` accepts)."""
    from erp_core.ledger.export import iter_beancount

    c = _ctx()
    with c.tenant(slug) as (s, _tenant):
        out = sys.stdout
        for line in iter_beancount(s, until=until.date() if until else None):
            out.write(line + "\n")
        out.flush()


@ledger_group.command("init")
@click.option("--tenant", "slug", required=True)
def init(slug: str) -> None:
    """Give a tenant the default chart of accounts and account mapping (adds what is missing;
    new tenants get them when they are created)."""
    from erp_core.ledger.service import ensure_chart

    c = _ctx()
    with c.tenant(slug) as (s, tenant):
        added = ensure_chart(s, tenant)
    click.echo(f"{added} account(s) added to the chart of {slug}")
