"""Latency of a list page of the staff web UI: the stock moves list over many moves.

    .venv/bin/python bench/ui.py [--rows 100000] [--db URL] [--requests 200] [--keep]

Creates a tenant with an owner, a warehouse with zones and bins, SKUs (some lot-tracked) and
``--rows`` stock moves inserted in bulk (batched INSERTs of 5,000 rows a transaction, not one
service call each: the moves are synthetic, spread over a year, in every state, with and
without a source; stock levels are not derived from them). Then it starts the real web server
(``erp serve --no-worker``) on a free port, logs in through the login form like a browser, and
requests ``/inventory/moves`` about ``--requests`` times, one request at a time: the first page,
later pages through the keyset cursor of the page before (``rel="next"``), as a whole page and
as the htmx fragment, with filters (state, SKU, location and below, source type, dates, a
search) and both sort directions. It prints one line:

    RESULT bench=list_page rows=N p50_ms=X p95_ms=Y db=<sqlite|postgresql> requests=R

preceded by comment lines (``#``) with the median per kind of request. The database is a
temporary SQLite file unless ``--db`` names one (PostgreSQL: ``postgresql+psycopg://...``);
either is migrated first (``erp migrate``). The moves of the run are deleted from a ``--db``
database at the end unless ``--keep`` is given, so it can be run again on the same database.
With ``ERP_BENCH_SLOW=1`` in the environment, every request slower than 200 ms is printed.
"""

from __future__ import annotations

import argparse
import logging
import os
import random
import re
import secrets
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
PASSWORD = "bench-password-123"
BATCH = 5000
ZONES = ("A", "B", "C", "D")
BINS = 10
N_SKUS = 500


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def setup(url: str, var_dir: str, rows: int) -> tuple[int, str, dict[str, Any]]:
    """Migrate, create the tenant, its owner, warehouse, SKUs and ``rows`` moves."""
    from sqlalchemy import Table, func, select

    from erp_core.auth import service as auth
    from erp_core.db.migrate import upgrade
    from erp_core.db.session import Database
    from erp_core.inventory import service as inv
    from erp_core.inventory.models import Location, Lot, Move
    from erp_core.plugins.registry import PluginRegistry
    from erp_core.settings import load_settings
    from erp_core.tenancy.service import create_tenant

    settings = load_settings(database_url=url, var_dir=var_dir)
    registry = PluginRegistry.discover(settings.plugins or None)
    db = Database(url)
    db.registry = registry
    upgrade(settings, registry, db.engine)
    tag = secrets.token_hex(4)
    email = f"owner-{tag}@bench.test"
    with db.session() as s, s.begin():
        tenant = create_tenant(s, f"bench-ui-{tag}", "Bench UI", registry=registry)
        user = auth.create_user(s, email, PASSWORD)
        auth.add_member(s, tenant, user, "owner")
        tid = tenant.id
    with db.tenant_session(tid) as s:
        inv.create_warehouse(s, code="WH", name="Bench warehouse")
        bins: list[int] = []
        for z in ZONES:
            zone = inv.create_location(s, parent="WH/STOCK", code=z, kind="view")
            for b in range(1, BINS + 1):
                bins.append(inv.create_location(s, parent=zone, code=f"{b:02d}").id)
        skus: list[tuple[int, bool]] = []
        for n in range(N_SKUS):
            lot_tracked = n % 10 == 0
            sku = inv.create_sku(
                s,
                code=f"SKU-{n:04d}",
                name=f"Bench item {n}",
                tracking="lot" if lot_tracked else "none",
            )
            skus.append((sku.id, lot_tracked))
        lots: dict[int, list[int]] = {}
        for sku_id, tracked in skus:
            if tracked:
                for k in range(3):
                    lot = Lot(sku_id=sku_id, code=f"L{sku_id}-{k}")
                    s.add(lot)
                    s.flush()
                    lots.setdefault(sku_id, []).append(lot.id)
        virtual = {u: loc.id for u, loc in inv.ensure_virtual_locations(s).items()}
        stock_id = s.scalar(select(Location.id).where(Location.path == "WH/STOCK"))
        assert stock_id is not None
    move_table: Table = Move.__table__  # type: ignore[assignment]
    rnd = random.Random(42)
    start = datetime.now(UTC) - timedelta(days=365)
    step = timedelta(days=365) / max(rows, 1)
    states = ["done"] * 17 + ["reserved", "draft", "cancelled"]
    inserted = 0
    while inserted < rows:
        chunk = []
        for i in range(inserted, min(rows, inserted + BATCH)):
            sku_id, tracked = skus[rnd.randrange(len(skus))]
            state = states[rnd.randrange(len(states))]
            place = bins[rnd.randrange(len(bins))] if rnd.random() < 0.8 else stock_id
            kind = rnd.random()
            if kind < 0.45:
                src, dst, source = virtual["supplier"], place, ("purchase.order", f"PO-{i // 7}")
            elif kind < 0.9:
                src, dst, source = place, virtual["customer"], ("oms.order", f"SO-{i // 3}")
            elif kind < 0.95:
                src, dst, source = virtual["adjustment"], place, ("inventory.count", f"C-{i}")
            else:
                other = bins[rnd.randrange(len(bins))]
                src, dst, source = place, other if other != place else stock_id, ("", "")
            created = start + step * i
            q = Decimal(rnd.randrange(1, 50))
            chunk.append(
                {
                    "tenant_id": tid,
                    "sku_id": sku_id,
                    "quantity": q,
                    "reserved": q if state == "reserved" else Decimal(0),
                    "from_location_id": src,
                    "to_location_id": dst,
                    "lot_id": rnd.choice(lots[sku_id]) if tracked else None,
                    "state": state,
                    "unit_cost": Decimal("2.5"),
                    "value": q * Decimal("2.5") if state == "done" else None,
                    "created_at": created,
                    "done_at": created + timedelta(minutes=5) if state == "done" else None,
                    "source_type": source[0] or None,
                    "source_id": source[1] or None,
                    "idempotency_key": None,
                    "origin_move_id": None,
                    "reference": f"bench {i}",
                }
            )
        with db.tenant_session(tid) as s:
            s.execute(move_table.insert(), chunk)
        inserted += len(chunk)
    with db.tenant_session(tid) as s:
        total = s.scalar(select(func.count()).select_from(Move))
    if total != rows:
        raise SystemExit(f"{rows} moves inserted but {total} found")
    if db.is_postgres:
        with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.exec_driver_sql("ANALYZE inv_move")  # what autovacuum does after a bulk load
    db.dispose()
    return tid, email, {"start": start, "sku": "SKU-0042", "lot_sku": "SKU-0040"}


def cleanup(url: str, tid: int) -> None:
    from sqlalchemy import delete

    from erp_core.db.session import Database
    from erp_core.inventory.models import Move

    db = Database(url)
    with db.tenant_session(tid) as s:
        s.execute(delete(Move).where(Move.tenant_id == tid))
    db.dispose()


def serve(url: str, var_dir: str, log_path: Path) -> tuple[subprocess.Popen[bytes], str]:
    import httpx

    port = _free_port()
    env = {
        **os.environ,
        "ERP_DATABASE_URL": url,
        "ERP_VAR_DIR": var_dir,
        "ERP_SECRET_KEY": "bench-" + secrets.token_hex(8),
        "ERP_LOG_LEVEL": "WARNING",
    }
    log = log_path.open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "erp_core.cli", "serve", "--no-worker", "--port", str(port)],
        env=env,
        stdout=log,
        stderr=log,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            break
        try:
            if httpx.get(base + "/healthz", timeout=1).status_code == 200:
                return proc, base
        except httpx.TransportError:
            time.sleep(0.2)
    proc.terminate()
    raise SystemExit(f"the server did not start:\n{log_path.read_text(errors='replace')[-2000:]}")


NEXT_RE = re.compile(r'rel="next" href="([^"]+)"')


def scenarios(info: dict[str, Any]) -> list[tuple[str, str, int]]:
    """(name, first URL, pages to follow) of the requests to time."""
    start: datetime = info["start"]
    since = (start + timedelta(days=100)).date().isoformat()
    until = (start + timedelta(days=130)).date().isoformat()
    base = "/inventory/moves"
    return [
        ("first_page", base, 1),
        ("pages_newest_first", base, 20),
        ("pages_oldest_first", base + "?sort=created_at", 10),
        ("state_filter", base + "?state_is=reserved", 10),
        ("sku_filter", base + f"?sku_is={info['sku']}", 5),
        ("location_filter", base + "?location=WH/STOCK/B", 10),
        ("location_virtual", base + "?location=@adjustment", 5),
        ("source_type", base + "?source_type=inventory.count", 5),
        ("date_range", base + f"?since={since}&until={until}", 10),
        ("date_range_oldest", base + f"?since={since}&until={until}&sort=created_at", 5),
        ("combined", base + f"?state_is=done&location=WH&since={since}", 10),
        ("search", base + "?q=bench+9999", 2),
        ("page_size_200", base + "?size=200", 5),
    ]


def run(base: str, email: str, info: dict[str, Any], target: int) -> list[tuple[str, float]]:
    import httpx

    timings: list[tuple[str, float]] = []
    with httpx.Client(base_url=base, timeout=60, follow_redirects=False) as c:
        page = c.get("/login").text
        m = re.search(r'name="csrf_token" value="([^"]+)"', page)
        assert m, "no CSRF token on the login form"
        r = c.post("/login", data={"email": email, "password": PASSWORD, "csrf_token": m.group(1)})
        if r.status_code != 303:
            raise SystemExit(f"login failed: {r.status_code} {r.text[-300:]}")
        for _ in range(5):  # warm up: templates, catalogs, connections
            c.get("/inventory/moves").raise_for_status()
        plan = scenarios(info)
        rounds = 0
        while len(timings) < target:
            for name, url, pages in plan:
                htmx = rounds % 2 == 1  # whole pages, then the fragments htmx asks for
                headers = {"HX-Request": "true"} if htmx else {}
                next_url: str | None = url
                for _ in range(pages):
                    if next_url is None or len(timings) >= target:
                        break
                    t0 = time.perf_counter()
                    r = c.get(next_url, headers=headers)
                    elapsed = (time.perf_counter() - t0) * 1000
                    if r.status_code != 200:
                        raise SystemExit(f"{next_url}: {r.status_code} {r.text[-300:]}")
                    timings.append((name, elapsed))
                    if os.environ.get("ERP_BENCH_SLOW") and elapsed > 200:
                        print(f"# slow: {elapsed:.0f} ms {next_url} htmx={htmx}", flush=True)
                    found = NEXT_RE.search(r.text)
                    next_url = found.group(1).replace("&amp;", "&") if found else None
            rounds += 1
    return timings


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    k = max(0, min(len(ordered) - 1, round(p / 100 * len(ordered) + 0.5) - 1))
    return ordered[k]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000, help="stock moves to create")
    parser.add_argument("--db", default=None, help="database URL (default: a temporary SQLite)")
    parser.add_argument("--requests", type=int, default=200, help="requests to time")
    parser.add_argument(
        "--keep", action="store_true", help="keep the moves at the end (of a --db database)"
    )
    args = parser.parse_args()
    logging.disable(logging.CRITICAL)  # test plugins that are broken on purpose, etc.

    tmp = tempfile.TemporaryDirectory(prefix="erp-bench-ui-")
    url = args.db or f"sqlite:///{Path(tmp.name) / 'bench.sqlite'}"
    t0 = time.perf_counter()
    tid, email, info = setup(url, tmp.name, args.rows)
    print(f"# {args.rows} moves created in {time.perf_counter() - t0:.1f} s", flush=True)
    proc, base = serve(url, tmp.name, Path(tmp.name) / "server.log")
    try:
        timings = run(base, email, info, args.requests)
    finally:
        proc.terminate()
        proc.wait(timeout=15)
    by_name: dict[str, list[float]] = {}
    for name, ms in timings:
        by_name.setdefault(name, []).append(ms)
    for name, values in by_name.items():
        print(
            f"# {name}: n={len(values)} median_ms={statistics.median(values):.1f} "
            f"max_ms={max(values):.1f}",
            flush=True,
        )
    if args.db and not args.keep:
        cleanup(url, tid)
    tmp.cleanup()
    values = [ms for _, ms in timings]
    dialect = "postgresql" if url.startswith("postgres") else "sqlite"
    print(
        f"RESULT bench=list_page rows={args.rows} p50_ms={percentile(values, 50):.1f} "
        f"p95_ms={percentile(values, 95):.1f} db={dialect} requests={len(values)}",
        flush=True,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
