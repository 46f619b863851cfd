"""``erp stock``: apply inventory counts from a CSV file, show stock levels."""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import TYPE_CHECKING

import click

from erp_core.inventory.errors import InventoryError, _fmt

if TYPE_CHECKING:
    from erp_core.cli import Ctx
    from erp_core.inventory.types import CountLine

#: Columns of a counts file, in this order (a header row with these names is optional).
COUNT_COLUMNS = ("sku", "location", "lot", "counted_qty")


def _ctx() -> Ctx:
    from erp_core.cli import Ctx

    return click.get_current_context().ensure_object(Ctx)


@click.group("stock")
def stock_group() -> None:
    """Inventory: counts and stock levels."""


def read_counts(text: str, *, progress: bool = False) -> list[CountLine]:
    """Parse a counts CSV (``sku,location,lot,counted_qty``; header optional, empty location:
    the warehouse's STOCK, empty lot: none). Raises :class:`InventoryError` naming the line."""
    from erp_core.inventory.types import CountLine

    rows = list(csv.reader(io.StringIO(text)))
    lines: list[CountLine] = []
    out = None if progress else io.StringIO()
    with click.progressbar(
        enumerate(rows, start=1), length=len(rows), label="Reading counts", file=out
    ) as bar:
        for n, row in bar:
            if not row or all(not c.strip() for c in row):
                continue
            cells = [c.strip() for c in row]
            if n == 1 and [c.lower() for c in cells] == list(COUNT_COLUMNS):
                continue
            if len(cells) != len(COUNT_COLUMNS):
                raise InventoryError(
                    f"line {n}: expected {len(COUNT_COLUMNS)} columns "
                    f"({','.join(COUNT_COLUMNS)}), got {len(cells)}"
                )
            sku, location, lot, qty = cells
            if not sku:
                raise InventoryError(f"line {n}: the sku column is empty")
            if not qty:
                raise InventoryError(f"line {n}: the counted_qty column is empty")
            lines.append(
                CountLine(sku=sku, location=location or None, lot=lot or None, counted=qty)
            )
    if not lines:
        raise InventoryError("the file has no count lines")
    return lines


@stock_group.command("count")
@click.option("--tenant", "slug", required=True, help="Tenant whose stock was counted.")
@click.option("--warehouse", required=True, help="Code of the counted warehouse.")
@click.option(
    "--file",
    "path",
    required=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="CSV file: sku,location,lot,counted_qty (header optional).",
)
@click.option("--reference", default="", help="Reference stored on the adjustment moves.")
@click.option("--dry-run", is_flag=True, help="Show what would change; change nothing.")
def count(slug: str, warehouse: str, path: Path, reference: str, dry_run: bool) -> None:
    """Apply an inventory count from a CSV file.

    Each line gives what was counted of a SKU (and lot or serial number) at a location of the
    warehouse; the differences with the books are booked as adjustment moves (gains and
    losses, valued at the average cost). Lines not in the file are not touched. The whole file
    is applied at once, or not at all.
    """
    from erp_core.inventory.service import count as apply_count
    from erp_core.tenancy.service import enabled_plugins

    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        raise click.ClickException(f"{path} is not UTF-8 text") from None
    c = _ctx()
    try:
        lines = read_counts(text, progress=True)
        with c.tenant(slug) as (s, tenant):
            hooks = c.registry.hooks_for(enabled_plugins(s, tenant.id))
            click.echo(f"Applying {len(lines)} count line(s) to warehouse {warehouse} ...")
            result = apply_count(s, warehouse, lines, reference=reference, hooks=hooks)
            if dry_run:
                s.rollback()
    except InventoryError as exc:
        raise click.ClickException(f"count not applied: {exc}") from None
    changed = [ln for ln in result.lines if ln.difference != 0]
    width = max([len(ln.sku_code) for ln in changed] + [3])
    if changed:
        click.echo(
            f"{'SKU':<{width}}  {'LOCATION':<24} {'LOT':<16} {'BOOKS':>10} "
            f"{'COUNTED':>10} {'DIFF':>10}"
        )
    for ln in changed:
        diff = ("+" if ln.difference > 0 else "") + _fmt(ln.difference)
        click.echo(
            f"{ln.sku_code:<{width}}  {ln.location_path:<24} {ln.lot_code or '-':<16} "
            f"{_fmt(ln.expected):>10} {_fmt(ln.counted):>10} {diff:>10}"
        )
    n_gain = sum(1 for ln in changed if ln.difference > 0)
    n_loss = len(changed) - n_gain
    verb = "would be booked (dry run, nothing changed)" if dry_run else "booked"
    click.echo(
        f"{len(result.lines)} line(s) counted: {len(result.lines) - len(changed)} matched the "
        f"books, {n_gain} gain(s) (+{_fmt(result.gains)}), {n_loss} loss(es) "
        f"(-{_fmt(result.losses)}) {verb}"
    )


@stock_group.command("levels")
@click.option("--tenant", "slug", required=True)
@click.option("--warehouse", default=None, help="Only this warehouse (code).")
@click.option("--sku", default=None, help="Only this SKU (code).")
@click.option(
    "--by",
    "group_by",
    type=click.Choice(["sku", "warehouse", "location", "lot"]),
    default="warehouse",
    show_default=True,
)
def levels(slug: str, warehouse: str | None, sku: str | None, group_by: str) -> None:
    """Show on hand, reserved and available stock."""
    from erp_core.inventory.service import stock_levels

    c = _ctx()
    try:
        with c.tenant(slug) as (s, _tenant):
            rows = stock_levels(s, sku=sku, warehouse=warehouse, group_by=group_by)  # type: ignore[arg-type]
    except InventoryError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"{'SKU':<20} {'WHERE':<30} {'ON HAND':>12} {'RESERVED':>12} {'AVAILABLE':>12}")
    for r in rows:
        where = r.location_path or r.warehouse_code or "*"
        if r.lot_code:
            where = f"{where} [{r.lot_code}]"
        click.echo(
            f"{r.sku_code:<20} {where:<30} {_fmt(r.on_hand):>12} {_fmt(r.reserved):>12} "
            f"{_fmt(r.available):>12}"
        )
    if not rows:
        click.echo("(no stock)")
