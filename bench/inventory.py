"""Hot-SKU reservation rate against a bare conditional UPDATE loop, plus the ledger posting rate.

    .venv/bin/python bench/inventory.py [--sqlite URL] [--pg URL] [--db URL ...]
                                        [--seconds 5] [--workers 1,4,16] [--no-ledger]

For each database (default: a temporary SQLite file; PostgreSQL too when ``--pg`` is given;
``--db`` may be repeated) and each number of workers W, W worker processes (as Celery's and the
web server's workers are; ``--threads`` runs them as threads of one process instead) reserve 1
unit at a time of one hot SKU (stock far above what they can take), each reservation in its own
transaction through ``erp_core.inventory.service.reserve`` with the kernel's hooks, as the JSON
API does (by codes, tenant-scoped session, row-level security on PostgreSQL); each worker holds
one connection, as the baseline's workers do:

    RESULT bench=reserve workers=W db=<sqlite|postgresql> reservations=N seconds=S per_s=X

then, on the same database with the same W, the baseline: a bare single-row
``UPDATE t SET available = available - 1 WHERE id = 1 AND available >= 1``, each in its own
transaction, one connection per worker:

    RESULT bench=baseline_update workers=W db=... updates=N seconds=S per_s=X ratio=R

where R = reserve per_s / baseline per_s. Finally the ledger's posting rate from
``bench/ledger.py`` on the same database (its ``RESULT bench=post ...`` line passed through).

A database given by URL is migrated first (``erp migrate``); each run creates a tenant of its
own and drops the baseline table at the end, so it can be run again on the same database.
"""

from __future__ import annotations

import argparse
import logging
import multiprocessing
import secrets
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
BIG_STOCK = 10**8
#: Workers are threads of this process instead of processes (``--threads``).
THREADS = False


def timed(
    workers: int, seconds: float, setup: Callable[[], Any], step: Callable[[Any], None]
) -> tuple[int, float]:
    """Run ``step(state)`` in ``workers`` worker processes (or threads, ``--threads``) for
    ``seconds``; (operations, elapsed). Each worker calls ``setup()`` once for its state (a
    connection) before the clock starts."""
    if THREADS:
        return _timed_threads(workers, seconds, setup, step)
    ctx = multiprocessing.get_context("fork")  # the closures are inherited, not pickled
    ready = ctx.Barrier(workers + 1)
    stop = ctx.Event()
    results: Any = ctx.Queue()

    def run() -> None:
        count, error = 0, ""
        try:
            state = setup()
        except BaseException as exc:
            results.put((0, repr(exc)))
            ready.abort()
            return
        try:
            ready.wait()
            while not stop.is_set():
                step(state)
                count += 1
        except BaseException as exc:
            error = repr(exc)
        finally:
            close = getattr(state, "close", None)
            if close is not None:
                close()
        results.put((count, error))

    procs = [ctx.Process(target=run) for _ in range(workers)]
    for p in procs:
        p.start()
    ready.wait()
    started = time.perf_counter()
    time.sleep(seconds)
    stop.set()
    outcomes = [results.get() for _ in procs]
    elapsed = time.perf_counter() - started
    for p in procs:
        p.join()
    errors = [e for _, e in outcomes if e]
    if errors:
        raise RuntimeError(f"{len(errors)} worker(s) failed: {errors[0]}")
    return sum(n for n, _ in outcomes), elapsed


def _timed_threads(
    workers: int, seconds: float, setup: Callable[[], Any], step: Callable[[Any], None]
) -> tuple[int, float]:
    counts = [0] * workers
    errors: list[BaseException] = []
    ready = threading.Barrier(workers + 1)
    stop = threading.Event()

    def run(n: int) -> None:
        try:
            state = setup()
        except BaseException as exc:
            errors.append(exc)
            ready.wait()
            return
        try:
            ready.wait()
            while not stop.is_set():
                step(state)
                counts[n] += 1
        except BaseException as exc:
            errors.append(exc)
        finally:
            close = getattr(state, "close", None)
            if close is not None:
                close()

    threads = [threading.Thread(target=run, args=(n,)) for n in range(workers)]
    for t in threads:
        t.start()
    ready.wait()
    started = time.perf_counter()
    time.sleep(seconds)
    stop.set()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - started
    if errors:
        raise RuntimeError(f"{len(errors)} worker(s) failed: {errors[0]!r}") from errors[0]
    return sum(counts), elapsed


def run_reserve(
    url: str, tid: int, sku: str, workers: int, seconds: float, hooks: Any
) -> tuple[int, float]:
    """``workers`` threads, each holding one connection, reserve 1 unit per transaction."""
    from erp_core.db.session import TENANT_KEY, Database
    from erp_core.inventory import service as inv

    pool = {"pool_size": workers + 2, "max_overflow": 0} if url.startswith("postgres") else {}
    db = Database(url, **pool)

    def step(conn: Any) -> None:
        # the kernel's tenant-scoped session on the worker's connection, one transaction
        with db.sessionmaker(bind=conn) as s, s.begin():
            s.info[TENANT_KEY] = tid
            inv.reserve(s, sku, 1, warehouse="WH", hooks=hooks)

    db.engine.dispose()  # no pooled connection may be inherited by the worker processes
    n, elapsed = timed(workers, seconds, db.engine.connect, step)
    with db.tenant_session(tid) as s:
        [level] = inv.stock_levels(s, sku=sku, group_by="sku")
    db.dispose()
    if level.reserved != n:
        raise SystemExit(f"{sku}: {n} reservations but {level.reserved} reserved")
    return n, elapsed


def run_baseline(url: str, workers: int, seconds: float) -> tuple[int, float]:
    """``workers`` threads, each holding one connection, run the bare conditional UPDATE."""
    from sqlalchemy import text

    from erp_core.db.session import make_engine

    pool = {"pool_size": workers + 2, "max_overflow": 0} if url.startswith("postgres") else {}
    engine = make_engine(url, **pool)
    with engine.begin() as conn:
        conn.execute(text("DROP TABLE IF EXISTS bench_baseline"))
        conn.execute(
            text("CREATE TABLE bench_baseline (id INTEGER PRIMARY KEY, available BIGINT NOT NULL)")
        )
        conn.execute(text("INSERT INTO bench_baseline VALUES (1, :n)"), {"n": BIG_STOCK})
    update = text(
        "UPDATE bench_baseline SET available = available - 1 WHERE id = 1 AND available >= 1"
    )

    def step(conn: Any) -> None:
        conn.execute(update)
        conn.commit()

    engine.dispose()  # no pooled connection may be inherited by the worker processes
    n, elapsed = timed(workers, seconds, engine.connect, step)
    with engine.begin() as conn:
        left = conn.execute(text("SELECT available FROM bench_baseline WHERE id = 1")).scalar()
        conn.execute(text("DROP TABLE bench_baseline"))
    engine.dispose()
    if left != BIG_STOCK - n:
        raise SystemExit(f"baseline: {n} updates but {BIG_STOCK - (left or 0)} taken")
    return n, elapsed


def bench_database(url: str, workers_list: list[int], seconds: float) -> None:
    from erp_core.db.migrate import upgrade
    from erp_core.db.session import Database
    from erp_core.inventory import service as inv
    from erp_core.plugins.registry import PluginRegistry
    from erp_core.settings import load_settings
    from erp_core.tenancy.service import create_tenant

    tmp = tempfile.TemporaryDirectory(prefix="erp-bench-")
    settings = load_settings(database_url=url, var_dir=tmp.name)
    registry = PluginRegistry.discover(settings.plugins or None)
    setup_db = Database(url)
    upgrade(settings, registry, setup_db.engine)
    dialect = setup_db.engine.dialect.name
    hooks = registry.hooks_for(())  # the kernel's built-ins, as for a tenant without plugins
    with setup_db.session() as s, s.begin():
        tid = create_tenant(s, f"bench-{secrets.token_hex(4)}", "Bench", registry=registry).id
    with setup_db.tenant_session(tid) as s:
        inv.create_warehouse(s, code="WH", name="Bench")
        for w in workers_list:
            inv.create_sku(s, code=f"HOT-{w}", name=f"Hot seller ({w} workers)")
            inv.receive(s, f"HOT-{w}", BIG_STOCK, warehouse="WH", unit_cost="1", hooks=hooks)
    setup_db.dispose()
    for w in workers_list:
        n, elapsed = run_reserve(url, tid, f"HOT-{w}", w, seconds, hooks)
        reserve_rate = n / elapsed
        print(
            f"RESULT bench=reserve workers={w} db={dialect} reservations={n} "
            f"seconds={elapsed:.2f} per_s={reserve_rate:.0f}",
            flush=True,
        )
        n, elapsed = run_baseline(url, w, seconds)
        base_rate = n / elapsed
        print(
            f"RESULT bench=baseline_update workers={w} db={dialect} updates={n} "
            f"seconds={elapsed:.2f} per_s={base_rate:.0f} ratio={reserve_rate / base_rate:.2f}",
            flush=True,
        )
    tmp.cleanup()


def ledger_rate(url: str) -> None:
    script = HERE / "ledger.py"
    if not script.exists():
        print(f"# {script} does not exist: no ledger posting rate", flush=True)
        return
    out = subprocess.run(
        [sys.executable, str(script), "--db", url], capture_output=True, text=True, check=False
    )
    lines = [ln for ln in out.stdout.splitlines() if ln.startswith("RESULT bench=post")]
    if out.returncode != 0 or not lines:
        print(f"# bench/ledger.py failed (exit {out.returncode}): {out.stderr.strip()[-500:]}")
        return
    for ln in lines:
        print(ln, flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sqlite", default=None, help="SQLite URL (default: a temporary file)")
    parser.add_argument("--pg", default=None, help="PostgreSQL URL (postgresql+psycopg://...)")
    parser.add_argument("--db", action="append", default=[], help="any database URL (repeatable)")
    parser.add_argument("--seconds", type=float, default=5.0, help="duration of each run")
    parser.add_argument("--workers", default="1,4,16", help="comma-separated worker counts")
    parser.add_argument("--no-ledger", action="store_true", help="skip bench/ledger.py")
    parser.add_argument(
        "--threads", action="store_true", help="workers are threads of one process, not processes"
    )
    args = parser.parse_args()
    global THREADS
    THREADS = args.threads
    logging.disable(logging.CRITICAL)  # test plugins that are broken on purpose, etc.
    workers = [int(w) for w in args.workers.split(",") if w.strip()]

    tmp = tempfile.TemporaryDirectory(prefix="erp-bench-inventory-")
    urls = [args.sqlite or f"sqlite:///{Path(tmp.name) / 'bench.sqlite'}"]
    if args.pg:
        urls.append(args.pg)
    urls.extend(args.db)
    for url in urls:
        bench_database(url, workers, args.seconds)
        if not args.no_ledger:
            ledger_rate(url)
    tmp.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
