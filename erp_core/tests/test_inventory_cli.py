"""``erp stock count`` applies a count from a CSV file (all or nothing); ``erp stock levels``."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from erp_core.inventory import service as inv
from erp_core.testing.inventory import invariant_violations


@pytest.fixture
def cli(erp_cli: Any) -> Any:
    return erp_cli


@pytest.fixture
def stocked(erp_db: Any, make_tenant: Any) -> Any:
    t = make_tenant("acme")
    with erp_db.tenant_session(t.id) as s:
        inv.create_warehouse(s, code="HZ", name="Hangzhou")
        inv.create_location(s, parent="HZ", code="A")
        inv.create_sku(s, code="TEA", name="Tea")
        inv.create_sku(s, code="MILK", name="Milk", tracking="lot")
        inv.receive(s, "TEA", 10, warehouse="HZ", unit_cost=2)
        inv.receive(s, "MILK", 5, warehouse="HZ", unit_cost=1, lot="L1")
    return t


def on_hand(erp_db: Any, t: Any) -> dict[tuple[str, str | None, str | None], Decimal]:
    with erp_db.tenant_session(t.id) as s:
        assert invariant_violations(s) == []
        return {
            (x.sku_code, x.location_path, x.lot_code): x.on_hand
            for x in inv.stock_levels(s, group_by="lot")
        }


def test_count_from_csv(cli, erp_db, stocked, tmp_path):
    f = tmp_path / "counts.csv"
    f.write_text(
        "\ufeffsku,location,lot,counted_qty\nTEA,STOCK,,7\nTEA,A,,2\nMILK,,L1,5\n", encoding="utf-8"
    )
    r = cli(
        "stock", "count", "--tenant", "acme", "--warehouse", "HZ", "--file", str(f), "--dry-run"
    )
    assert r.exit_code == 0, r.output
    assert "would be booked (dry run, nothing changed)" in r.output
    assert on_hand(erp_db, stocked)[("TEA", "HZ/STOCK", None)] == 10
    r = cli("stock", "count", "--tenant", "acme", "--warehouse", "HZ", "--file", str(f))
    assert r.exit_code == 0, r.output
    assert "Reading counts" in r.output
    assert "3 line(s) counted: 1 matched the books, 1 gain(s) (+2), 1 loss(es) (-3) booked" in (
        r.output
    )
    assert "HZ/STOCK" in r.output and "-3" in r.output
    assert on_hand(erp_db, stocked) == {
        ("TEA", "HZ/STOCK", None): Decimal(7),
        ("TEA", "HZ/A", None): Decimal(2),
        ("MILK", "HZ/STOCK", "L1"): Decimal(5),
    }
    r = cli("stock", "levels", "--tenant", "acme", "--warehouse", "HZ", "--by", "location")
    assert r.exit_code == 0 and "HZ/A" in r.output and "TEA" in r.output


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("TEA,STOCK,,7\nTEA,STOCK,7\n", "line 2: expected 4 columns"),
        ("TEA,STOCK,,7\nNOPE,STOCK,,1\n", "count line 2: unknown SKU"),
        ("TEA,STOCK,,7\nMILK,STOCK,,1\n", "count line 2: SKU MILK is tracked by lot"),
        ("TEA,STOCK,,-1\n", "zero or more"),
        ("TEA,STOCK,,1.5\n", "whole pcs"),
        ("TEA,NOWHERE,,1\n", "unknown location"),
        ("sku,location,lot,counted_qty\n", "no count lines"),
        ("TEA,STOCK,,\n", "counted_qty column is empty"),
    ],
)
def test_an_invalid_file_books_nothing(cli, erp_db, stocked, tmp_path, content, message):
    before = on_hand(erp_db, stocked)
    f = tmp_path / "counts.csv"
    f.write_text(content, encoding="utf-8")
    r = cli("stock", "count", "--tenant", "acme", "--warehouse", "HZ", "--file", str(f))
    assert r.exit_code == 1
    assert "count not applied" in r.output and message in r.output, r.output
    assert on_hand(erp_db, stocked) == before


def test_unknown_tenant_or_warehouse(cli, stocked, tmp_path):
    f = tmp_path / "counts.csv"
    f.write_text("TEA,STOCK,,1\n", encoding="utf-8")
    r = cli("stock", "count", "--tenant", "nope", "--warehouse", "HZ", "--file", str(f))
    assert r.exit_code == 1 and "no tenant 'nope'" in r.output
    r = cli("stock", "count", "--tenant", "acme", "--warehouse", "XX", "--file", str(f))
    assert r.exit_code == 1 and "unknown warehouse 'XX'" in r.output
