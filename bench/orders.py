"""The order pipeline's throughput: ingest (de-dup) → review → route → reserve → ship → write
back → ledger, on N normalized channel orders of 3 lines.

    python bench/orders.py --n 1000 --mode batch [--db URL] [--page 100] [--workers W]

``batch`` takes orders the way a sync or a backfill delivers them: pages of ``--page`` orders,
each page one transaction per stage. ``single`` takes one order per transaction, as pushed
messages arrive. Write-back goes to the Tmall sandbox served on loopback in this process (the
connector signs every call and the sandbox verifies it). Prints per-stage seconds and one line::

    RESULT bench=orders mode=batch n=1000 db=sqlite seconds=S orders_per_s=X

With ``--workers W`` the pages (or single orders) are dealt round-robin to W worker processes,
each with its own database connection, as W Celery workers would take them; the RESULT line then
says ``workers=W`` and the stage times are summed over the workers. Compare W = 1 and 2 on
PostgreSQL for the gain of a second worker (the machine has two cores; SQLite serializes
writers).

Without ``--db`` a fresh SQLite file in a temporary folder is used; a PostgreSQL URL must name a
scratch database (the tenant it creates is left there).
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import secrets
import sys
import tempfile
import threading
import time
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any


def catalogue_codes() -> list[str]:
    """Every merchant SKU code the sandbox's shop sells."""
    from erp_connector_tmall.sandbox import CATALOGUE

    return sorted(
        {c for _, outer, _, _, skus in CATALOGUE for c in ([k[1] for k in skus] or [outer])}
    )


class Stages:
    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] += time.perf_counter() - t0


def setup(url: str, var_dir: str, box: Any) -> tuple[Any, Any, Any, int, int]:
    from erp_oms.models import WarehouseRoute

    from erp_core.channels import service as chsvc
    from erp_core.channels.interfaces import TokenSet
    from erp_core.db.migrate import upgrade
    from erp_core.db.session import Database
    from erp_core.inventory import service as inv
    from erp_core.plugins.registry import PluginRegistry
    from erp_core.settings import load_settings
    from erp_core.tenancy.service import create_tenant, enable_plugin

    # a key of its own: channel secrets are never stored under the default one on PostgreSQL
    settings = load_settings(database_url=url, var_dir=var_dir, secret_key=secrets.token_hex(32))
    registry = PluginRegistry.discover(settings.plugins or None)
    db = Database(url)
    db.registry = registry
    upgrade(settings, registry, db.engine)
    tag = secrets.token_hex(4)
    with db.session() as s, s.begin():
        tenant = create_tenant(s, f"bench-orders-{tag}", "Bench orders", registry=registry)
        tid = tenant.id
        for plugin in ("oms", "tmall"):
            enable_plugin(s, registry, tenant, plugin, with_dependencies=True)
    spec = box.account()
    with db.tenant_session(tid) as s:
        hz = inv.create_warehouse(s, code="HZ", name="杭州仓")
        bj = inv.create_warehouse(s, code="BJ", name="北京仓")
        for code in catalogue_codes():
            inv.create_sku(s, code=code, name=code)
            inv.receive(s, code, 10**7, warehouse=hz, unit_cost=Decimal("10.00"))
            inv.receive(s, code, 10**7, warehouse=bj, unit_cost=Decimal("11.00"))
        s.add(WarehouseRoute(warehouse_id=hz.id, priority=10, regions=["浙江省", "上海市"]))
        s.add(WarehouseRoute(warehouse_id=bj.id, priority=20, regions=[]))
        acc = chsvc.create_account(
            s,
            registry,
            settings,
            connector="tmall",
            shop_id=spec.shop_id,
            name="Bench shop",
            app_key=spec.app_key,
            config=dict(spec.config),
            secrets=dict(spec.secrets),
        )
        chsvc.set_tokens(s, settings, acc, TokenSet(access_token=spec.access_token or ""))
        account_id = acc.id
    return db, registry, settings, tid, account_id


def orders(box: Any, channel: Any, n: int) -> list[Any]:
    """N paid orders of 3 lines created at the sandbox, fetched through the connector as a sync
    would (setup, not timed): the normalized orders the pipeline starts from."""
    from erp_core.channels.interfaces import Cursor, Window

    end = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=10)
    start = end - timedelta(hours=20)
    step = (end - start) / max(n, 1)
    t0 = time.perf_counter()
    for i in range(n):
        box.order_with_status("WAIT_SELLER_SEND_GOODS", at=start + step * i, lines=3)
        if (i + 1) % 10_000 == 0 and i + 1 < n:
            progress(f"setup: {i + 1} of {n} orders created at the sandbox", t0)
    progress(f"setup: {n} orders created at the sandbox", t0)
    out: dict[str, Any] = {}
    cursor: Any = Cursor(window=Window(start=start, end=end + timedelta(seconds=1)))
    t0 = time.perf_counter()
    while cursor is not None:
        page = channel.fetch_orders(cursor)
        for o in page.items:
            out[o.order_id] = o
        cursor = page.next
        if cursor is not None and len(out) % 10_000 < len(page.items):
            progress(f"setup: {len(out)} of {n} orders fetched through the connector", t0)
    progress(f"setup: {len(out)} orders fetched through the connector", t0)
    return sorted(out.values(), key=lambda o: (o.modified_at, o.order_id))


class CallCounter:
    """Counts the Python and built-in function calls made while entered in this thread and in
    the threads started meanwhile (the write-back's, when its calls go in parallel); the
    sandbox's threads, started before, are not counted."""

    def __init__(self) -> None:
        self.calls = 0

    def _count(self, frame: Any, event: str, arg: Any) -> None:
        if event == "call" or event == "c_call":
            self.calls += 1

    def __enter__(self) -> CallCounter:
        sys.setprofile(self._count)
        threading.setprofile(self._count)
        return self

    def __exit__(self, *exc: object) -> None:
        sys.setprofile(None)
        threading.setprofile(None)  # type: ignore[arg-type]


def cpu_ticks() -> tuple[int, int] | None:
    """(busy, total) clock ticks of every core of the machine so far (Linux), else None."""
    try:
        with open("/proc/stat") as f:
            fields = [int(x) for x in f.readline().split()[1:9]]
    except (OSError, ValueError):
        return None
    idle = fields[3] + fields[4]  # idle, iowait
    return sum(fields) - idle, sum(fields)


def busy_cores(since: tuple[int, int] | None) -> str:
    """The cores kept busy since ``since`` (the bench, its workers, the sandbox and the
    database server alike): shows whether a run was short of CPU."""
    now = cpu_ticks()
    if since is None or now is None or now[1] == since[1]:
        return ""
    share = (now[0] - since[0]) / (now[1] - since[1])
    return f" busy_cores={share * (os.cpu_count() or 1):.2f}"


def progress(what: str, since: float) -> None:
    """A line on stderr while the long parts run (stdout keeps the figures)."""
    print(f"{what} ({time.perf_counter() - since:.1f} s)", file=sys.stderr, flush=True)


def run(
    db: Any,
    registry: Any,
    settings: Any,
    tid: int,
    account_id: int,
    batch: list[Any],
    st: Stages,
    channel: Any,
) -> int:
    from erp_oms import service as svc

    from erp_core.channels.sync import record_versions

    # one transaction per stage, as the sync, the oms.process task and the warehouse's
    # shipping each commit their own work; the sync hands a page's new orders to the OMS's
    # erp_channel_orders hook, which stores them with store_orders
    with st.stage("ingest"), db.tenant_session(tid) as s:
        verdicts = record_versions(s, account_id, batch)
        todo = [o for o, v in zip(batch, verdicts, strict=True) if v in ("new", "changed")]
        ids = svc.store_orders(s, account_id, "tmall", todo)
        s.flush()
    with st.stage("review+route+reserve"), db.tenant_session(tid) as s:
        res = svc.process(s, order_ids=ids, hooks=svc.hooks_of(s), limit=len(ids) or 1)
    # the parcels read as rows, as the write-back task reads its due parcels
    with st.stage("ship+ledger"), db.tenant_session(tid) as s:
        parcels = svc.parcel_rows(s, ids, state="reserved")
        svc.ship_many(s, [(p, f"SF{p.id:010d}", "SF") for p in parcels], hooks=svc.hooks_of(s))
    with db.tenant_session(tid) as s, st.stage("write-back"):
        svc.writeback_many(s, svc.due_writeback_rows(s, order_ids=ids), channel)
    return res.reserved


def run_workers(
    url: str,
    settings: Any,
    registry: Any,
    tid: int,
    account_id: int,
    todo: list[Any],
    size: int,
    workers: int,
) -> tuple[int, float, dict[str, float], str]:
    """The orders dealt round-robin in pages to ``workers`` processes (as Celery workers take
    tasks), each with its own connection; (orders reserved, wall seconds, stage seconds summed
    over the workers, the busy cores' figure)."""
    import multiprocessing

    from erp_connector_tmall.channel import TmallChannel

    from erp_core.channels import service as chsvc
    from erp_core.channels.models import ChannelAccount
    from erp_core.db.session import Database

    pages = [todo[i : i + size] for i in range(0, len(todo), size)]
    shares = [pages[w::workers] for w in range(workers)]
    ctx = multiprocessing.get_context("fork")  # settings, registry and closures are inherited
    ready = ctx.Barrier(workers + 1)
    results: Any = ctx.Queue()

    def work(share: list[list[Any]]) -> None:
        try:
            db = Database(url)
            db.registry = registry
            with db.tenant_session(tid) as s:
                account = s.get(ChannelAccount, account_id)
                ctx_ = chsvc.account_context(s, account, settings)
            channel = TmallChannel(ctx_, limiter=False)
            st = Stages()
            ready.wait()
            done = sum(
                run(db, registry, settings, tid, account_id, page, st, channel) for page in share
            )
            db.dispose()
            results.put((done, dict(st.seconds), ""))
        except BaseException as exc:
            ready.abort()
            results.put((0, {}, repr(exc)))

    procs = [ctx.Process(target=work, args=(share,)) for share in shares]
    for proc in procs:
        proc.start()
    ready.wait()
    t0 = time.perf_counter()
    ticks = cpu_ticks()
    outcomes = [results.get() for _ in procs]
    seconds = time.perf_counter() - t0
    busy = busy_cores(ticks)
    for proc in procs:
        proc.join()
    errors = [e for _, _, e in outcomes if e]
    if errors:
        raise SystemExit(f"{len(errors)} worker(s) failed: {errors[0]}")
    stages: dict[str, float] = defaultdict(float)
    for _, st, _ in outcomes:
        for k, v in st.items():
            stages[k] += v
    return sum(n for n, _, _ in outcomes), seconds, stages, busy


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--mode", choices=("batch", "single"), default="batch")
    ap.add_argument("--page", type=int, default=100, help="orders per transaction in batch mode")
    ap.add_argument("--db", default=None, help="database URL (default: a fresh SQLite file)")
    ap.add_argument(
        "--calls",
        action="store_true",
        help="count the Python function calls of the pipeline (in this process; slower): a "
        "figure that does not vary from run to run, for comparing revisions on a noisy machine",
    )
    ap.add_argument(
        "--workers",
        type=int,
        default=0,
        help="run in this many worker processes (pages dealt round-robin); 0: in this process",
    )
    args = ap.parse_args()
    if args.calls and args.workers:
        ap.error("--calls counts the calls of this process: use it without --workers")
    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("erp_core.channels.http").setLevel(logging.ERROR)
    logging.getLogger("httpx").setLevel(logging.WARNING)

    # erp_oms.service and erp_core.channels.sync: what run() imports, loaded before the clock
    # starts, as a worker has them once started (the sync module brings in Celery: a fifth of
    # a second on the first page otherwise)
    import erp_oms.service  # noqa: F401
    from erp_connector_tmall.channel import TmallChannel
    from erp_connector_tmall.sandbox import TmallSandbox

    import erp_core.channels.sync  # noqa: F401
    from erp_core.channels import service as chsvc
    from erp_core.channels.models import ChannelAccount
    from erp_core.tasks.process import settle_heap
    from erp_core.testing.sandbox import running

    box = TmallSandbox(seed=5)
    # The platform's memory of every call would otherwise grow in this process with N and
    # lengthen the garbage collector's full passes: a cost of the bench, not of the pipeline
    box.history = 1000
    with tempfile.TemporaryDirectory() as tmp, running(box):
        url = args.db or f"sqlite:///{Path(tmp) / 'bench.sqlite'}"
        db, registry, settings, tid, account_id = setup(url, tmp, box)
        with db.tenant_session(tid) as s:
            account = s.get(ChannelAccount, account_id)
            # the sandbox is local: no platform QPS limit to honour
            channel = TmallChannel(chsvc.account_context(s, account, settings), limiter=False)
        todo = orders(box, channel, args.n)
        # As a worker settles its heap once started (erp_core.tasks.process.settle_heap);
        # here that also takes the N normalized orders and the sandbox's N trades, the bench's
        # own and held to the end (a worker holds one page), out of the garbage collector's
        # full passes, which would make the pipeline look slower as N grows.
        settle_heap()
        st = Stages()
        size = args.page if args.mode == "batch" else 1
        kind = db.engine.dialect.name
        if args.workers > 0:
            db.dispose()  # no pooled connection may be inherited by the workers
            reserved, seconds, stages, busy = run_workers(
                url, settings, registry, tid, account_id, todo, size, args.workers
            )
            st.seconds.update(stages)
        else:
            t0 = time.perf_counter()
            ticks = cpu_ticks()
            reserved = 0
            counter = CallCounter() if args.calls else None
            for i in range(0, len(todo), size):
                with counter or contextlib.nullcontext():
                    reserved += run(
                        db, registry, settings, tid, account_id, todo[i : i + size], st, channel
                    )
                if (i + size) % 10_000 < size and i + size < len(todo):
                    progress(f"run: {i + size} of {len(todo)} orders", t0)
            seconds = time.perf_counter() - t0
            busy = busy_cores(ticks)
        if reserved != args.n:
            print(f"only {reserved} of {args.n} orders were reserved", file=sys.stderr)
            return 1
        for name, secs in st.seconds.items():
            print(f"stage {name}: {secs:.2f} s ({secs / args.n * 1000:.2f} ms/order)")
        print(f"ship-back calls accepted by the sandbox: {len(box.shipments())}")
        workers = f" workers={args.workers}" if args.workers else ""
        if args.workers == 0 and args.calls and counter is not None:
            busy += f" calls_per_order={counter.calls / args.n:.0f}"
        print(
            f"RESULT bench=orders mode={args.mode} n={args.n} db={kind}{workers} "
            f"seconds={seconds:.2f} orders_per_s={args.n / seconds:.1f}{busy}"
        )
        db.dispose()
    return 0


if __name__ == "__main__":
    sys.exit(main())
