"""Ledger posting rate: N entries of 3-4 postings with dimensions through ``post_entry``.

    .venv/bin/python bench/ledger.py [--db URL] [--n 5000]

Creates a tenant (in a temporary SQLite file unless ``--db`` names a database, which is
migrated first), posts the entries in transactions of 100, and prints one line:

    RESULT bench=post db=<sqlite|postgresql> entries=N seconds=S entries_per_s=X
"""

from __future__ import annotations

import argparse
import datetime
import logging
import secrets
import sys
import tempfile
import time
from decimal import Decimal
from pathlib import Path

BATCH = 100
CHANNELS = ("tmall", "jd", "douyin", "pdd")


def drafts(n: int):  # type: ignore[no-untyped-def]
    from erp_core.ledger.types import EntryDraft, PostingDraft

    start = datetime.date(2026, 1, 1)
    for i in range(n):
        channel = CHANNELS[i % len(CHANNELS)]
        order = f"O-{i:07d}"
        sku = f"SKU-{i % 97:03d}"
        price = Decimal(1000 + i % 5000).scaleb(-2) * 10
        fee = (price * Decimal("0.05")).quantize(Decimal("0.01"))
        dims = {"channel": channel, "store": f"{channel}-shop", "order": order, "sku": sku}
        postings = [
            PostingDraft(account="1012", amount=price - fee, **dims),
            PostingDraft(account="560101", amount=fee, **dims),
        ]
        if i % 2:  # every other sale with its output VAT (13 %) on a line of its own
            net = (price / Decimal("1.13")).quantize(Decimal("0.01"))
            postings.append(PostingDraft(account="5001", amount=-net, **dims))
            postings.append(PostingDraft(account="2221", amount=net - price, **dims))
        else:
            postings.append(PostingDraft(account="5001", amount=-price, warehouse="WH-1", **dims))
        yield EntryDraft(
            date=start + datetime.timedelta(days=i % 360),
            narration=f"{channel} order {order}",
            postings=tuple(postings),
            idempotency_key=f"bench-{order}",
            source_type="bench_order",
            source_id=order,
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", default=None, help="database URL (default: a temporary SQLite)")
    parser.add_argument("--n", type=int, default=5000, help="entries to post")
    args = parser.parse_args()
    logging.disable(logging.CRITICAL)  # test plugins that are broken on purpose, etc.

    from erp_core.db.migrate import upgrade
    from erp_core.db.session import Database
    from erp_core.ledger.service import post_entry, trial_balance
    from erp_core.plugins.registry import PluginRegistry
    from erp_core.settings import load_settings
    from erp_core.tenancy.service import create_tenant

    tmp = tempfile.TemporaryDirectory(prefix="erp-bench-")
    url = args.db or f"sqlite:///{Path(tmp.name) / 'bench.sqlite'}"
    settings = load_settings(database_url=url, var_dir=tmp.name)
    registry = PluginRegistry.discover(settings.plugins or None)
    db = Database(url)
    db.registry = registry
    upgrade(settings, registry, db.engine)
    with db.session() as s, s.begin():
        tid = create_tenant(s, f"bench-{secrets.token_hex(4)}", "Bench", registry=registry).id

    work = list(drafts(args.n))
    started = time.perf_counter()
    for i in range(0, len(work), BATCH):
        with db.tenant_session(tid) as s:
            for d in work[i : i + BATCH]:
                post_entry(s, d)
    seconds = time.perf_counter() - started

    with db.tenant_session(tid) as s:
        rows = trial_balance(s)
    if sum(r.balance for r in rows) != 0:
        print("trial balance does not add up to zero", file=sys.stderr)
        return 1
    db.dispose()
    tmp.cleanup()
    print(
        f"RESULT bench=post db={db.engine.dialect.name} entries={args.n} "
        f"seconds={seconds:.2f} entries_per_s={args.n / seconds:.0f}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
