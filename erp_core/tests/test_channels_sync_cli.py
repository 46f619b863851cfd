"""``erp channels sync`` (backfill with progress and summary) and the periodic sync tasks."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from erp_test_beta.channel import BetaChannel
from sqlalchemy import func, select

from erp_core.channels import service as svc
from erp_core.channels import sync
from erp_core.channels.sync_models import ChannelObject
from erp_core.tasks.app import beat_schedule
from erp_core.tasks.runtime import Runtime, set_runtime
from erp_core.testing import channel_sim
from erp_core.testing.channel_sim import PlatformSim

T0 = datetime(2026, 11, 1, tzinfo=UTC)


@pytest.fixture
def routed(monkeypatch: Any) -> Any:
    monkeypatch.setattr(BetaChannel, "fetch_orders", channel_sim.fetch_orders)
    monkeypatch.setattr(BetaChannel, "fetch_refunds", channel_sim.fetch_refunds)
    yield
    channel_sim.clear()


@pytest.fixture
def cli(erp_cli: Any) -> Any:
    return erp_cli


def shop(db: Any, registry: Any, settings: Any, tenant_id: int, shop_id: str, **kw: Any) -> int:
    with db.tenant_session(tenant_id) as s:
        acc = svc.create_account(
            s,
            registry,
            settings,
            connector="test_beta",
            shop_id=shop_id,
            name=shop_id,
            secrets={"app_secret": "sim-secret"},
        )
        if kw.get("active") is False:
            svc.deactivate_account(s, acc)
        return acc.id


def objects(db: Any, tenant_id: int) -> int:
    with db.tenant_session(tenant_id) as s:
        return int(s.scalar(select(func.count()).select_from(ChannelObject)) or 0)


def test_backfill_prints_progress_and_a_summary(
    cli, make_tenant, erp_db, erp_registry, erp_settings, routed
):
    t = make_tenant("acme", plugins=("test_beta",))
    end = T0 + timedelta(hours=30)
    sim = PlatformSim(seed=7, start=T0, end=end, orders=25, refunds=6, page_size=4)
    channel_sim.register("cli-shop", sim)
    acc = shop(erp_db, erp_registry, erp_settings, t.id, "cli-shop")
    args = ("channels", "sync", str(acc), "--tenant", "acme")
    since, until = "--since", "2026-11-01T00:00:00+00:00"
    r = cli(*args, since, until, "--until", end.isoformat())
    assert r.exit_code == 0, r.output
    assert "window 1/3 [2026-11-01T00:00:00+00:00 .. 2026-11-01T12:00:00+00:00) done" in r.output
    assert "window 3/3" in r.output
    assert "synced orders of channel account" in r.output
    assert "3 window(s)" in r.output and "new 25, changed 0, unchanged 0" in r.output
    again = cli(*args, since, until, "--until", end.isoformat())
    assert "new 0, changed 0, unchanged 25" in again.output
    refunds = cli(*args, since, until, "--until", end.isoformat(), "--stream", "refunds")
    assert refunds.exit_code == 0 and "synced refunds" in refunds.output
    assert "new 6" in refunds.output
    # a date without an offset is the tenant's (Asia/Shanghai) midnight
    zoned = cli(*args, "--since", "2026-11-01", "--until", "2026-11-01T09:00")
    assert zoned.exit_code == 0 and "[2026-10-31T16:00:00+00:00 .." in zoned.output


def test_backfill_errors_exit_1(cli, make_tenant, erp_db, erp_registry, erp_settings, routed):
    t = make_tenant("acme", plugins=("test_beta",))
    make_tenant("bolt", plugins=("test_beta",))
    sim = PlatformSim(seed=1, start=T0, end=T0 + timedelta(hours=3), orders=5)
    channel_sim.register("cli-shop", sim)
    acc = shop(erp_db, erp_registry, erp_settings, t.id, "cli-shop")
    other = cli("channels", "sync", str(acc), "--tenant", "bolt", "--since", "2026-11-01")
    assert other.exit_code == 1
    assert f"sync failed: no channel account {acc} in this tenant" in other.output
    assert sim.calls == [] and objects(erp_db, t.id) == 0
    sim.refuse_auth()
    denied = cli("channels", "sync", str(acc), "--tenant", "acme", "--since", "2026-11-01")
    assert denied.exit_code == 1 and "the platform refused the credentials" in denied.output
    bad = cli("channels", "sync", str(acc), "--tenant", "acme", "--since", "yesterday")
    assert bad.exit_code == 1 and "--since must be a date" in bad.output
    backwards = cli(
        "channels", "sync", str(acc), "--tenant", "acme", "--since", "2026-11-02",
        "--until", "2026-11-01",
    )  # fmt: skip
    assert backwards.exit_code == 1 and "--until must be after --since" in backwards.output


@pytest.fixture
def rt(erp_settings: Any, erp_db: Any, erp_registry: Any) -> Any:
    set_runtime(Runtime(erp_settings, erp_db, erp_registry))
    yield
    set_runtime(None)


def test_periodic_sync_covers_due_accounts_only(
    make_tenant, erp_db, erp_registry, erp_settings, routed, rt, monkeypatch
):
    acme = make_tenant("acme", plugins=("test_beta",))
    bolt = make_tenant("bolt", plugins=("test_beta",))
    a1 = shop(erp_db, erp_registry, erp_settings, acme.id, "a1")
    shop(erp_db, erp_registry, erp_settings, acme.id, "a2", active=False)
    b1 = shop(erp_db, erp_registry, erp_settings, bolt.id, "b1")
    with erp_db.system_session() as s:
        from erp_core.tenancy.service import disable_plugin, get_tenant

        disable_plugin(s, erp_registry, get_tenant(s, "bolt"), "test_beta")
    assert sync.due_accounts(erp_db) == [(acme.id, a1)]
    assert b1  # bolt's shop is not due: its connector is disabled there

    sent: list[tuple[Any, ...]] = []
    monkeypatch.setattr(
        "erp_core.tasks.enqueue.enqueue", lambda app, task, tid, *a: sent.append((task, tid, *a))
    )
    assert sync.sync_due_task() == 2
    assert sent == [
        (sync.SYNC_TASK, acme.id, a1, "orders"),
        (sync.SYNC_TASK, acme.id, a1, "refunds"),
    ]
    entry = beat_schedule(erp_registry)["core.channels.sync"]
    assert entry["task"] == sync.SYNC_DUE_TASK

    now = datetime.now(UTC)
    sim = PlatformSim(seed=3, start=now - timedelta(hours=20), end=now, orders=12)
    channel_sim.register("a1", sim)
    out = sync.sync_account_task(a1, "orders", _erp_tenant_id=acme.id)
    first_day = sim.expected("orders", now - timedelta(days=1), now - sync.DEFAULT_SAFETY_LAG)
    assert out["new"] == len(first_day) and objects(erp_db, acme.id) == len(first_day)
    sim.refuse_auth()
    out = sync.sync_account_task(a1, "orders", _erp_tenant_id=acme.id)
    assert "the platform refused" in out["error"]


def test_runs_for_the_same_account_never_overlap(
    make_tenant, erp_db, erp_registry, erp_settings, rt, monkeypatch
):
    acme = make_tenant("acme", plugins=("test_beta",))
    a1 = shop(erp_db, erp_registry, erp_settings, acme.id, "a1")
    spans: list[tuple[float, float]] = []

    def slow_run(*args: Any, **kw: Any) -> Any:
        start = time.monotonic()
        time.sleep(0.3)
        spans.append((start, time.monotonic()))
        return sync.SyncResult(account_id=a1, stream="orders")

    monkeypatch.setattr(sync, "run", slow_run)
    threads = [
        threading.Thread(
            target=lambda: sync.sync_account_task(a1, "orders", _erp_tenant_id=acme.id)
        )
        for _ in range(2)
    ]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert len(spans) == 2
    (_s1, e1), (s2, _e2) = sorted(spans)
    assert s2 >= e1
