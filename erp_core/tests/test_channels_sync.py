"""The sync engine against the in-memory platform simulator: windows, pages, cursors, versions."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from erp_test_beta.channel import BetaChannel
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import event, func, select

from erp_core import hookimpl
from erp_core.channels import service as svc
from erp_core.channels import sync
from erp_core.channels.sync_models import ChannelCursor, ChannelObject
from erp_core.testing import channel_sim
from erp_core.testing.channel_sim import PlatformSim, SimCrash

T0 = datetime(2026, 11, 1, tzinfo=UTC)
LATER = T0 + timedelta(days=30)
_shops = itertools.count(1)


class Recorder:
    """Implements the channel hooks; keeps only what was delivered in committed transactions."""

    def __init__(self) -> None:
        self.committed: list[tuple[int, int, str, str, Any]] = []
        self.fail_on: str | None = None  # raise when this platform id is delivered

    def _add(self, session: Any, entry: tuple[int, int, str, str, Any]) -> None:
        if entry[3] == self.fail_on:
            raise RuntimeError(f"hook failed on {entry[3]}")
        pending = session.info.get("rec_pending")
        if pending is None:
            pending = session.info["rec_pending"] = []

            def moved(sess: Any) -> None:
                self.committed.extend(sess.info.pop("rec_pending", []))

            def dropped(sess: Any) -> None:
                sess.info.pop("rec_pending", None)

            event.listen(session, "after_commit", moved, once=True)
            event.listen(session, "after_rollback", dropped, once=True)
        pending.append(entry)

    @hookimpl
    def erp_channel_order(self, session: Any, tenant_id: int, account_id: int, order: Any) -> None:
        self._add(session, (tenant_id, account_id, "order", order.order_id, order))

    @hookimpl
    def erp_channel_refund(
        self, session: Any, tenant_id: int, account_id: int, refund: Any
    ) -> None:
        self._add(session, (tenant_id, account_id, "refund", refund.refund_id, refund))

    def ids(self, kind: str = "order") -> list[str]:
        return [e[3] for e in self.committed if e[2] == kind]

    def versions(self, kind: str = "order") -> dict[str, Any]:
        out: dict[str, Any] = {}
        for e in self.committed:
            if e[2] == kind:
                out[e[3]] = e[4]
        return out


@pytest.fixture
def recorder(erp_registry: Any) -> Any:
    rec = Recorder()
    erp_registry.pm.register(rec, name="sync-test-recorder")
    yield rec
    erp_registry.pm.unregister(rec)


@pytest.fixture
def routed(monkeypatch: Any) -> Any:
    """BetaChannel fetches from the simulator registered for its shop id."""
    monkeypatch.setattr(BetaChannel, "fetch_orders", channel_sim.fetch_orders)
    monkeypatch.setattr(BetaChannel, "fetch_refunds", channel_sim.fetch_refunds)
    yield
    channel_sim.clear()


@pytest.fixture
def acme(make_tenant: Any) -> Any:
    return make_tenant("acme", plugins=("test_beta",))


def add_shop(db: Any, registry: Any, settings_: Any, tenant_id: int, sim: PlatformSim) -> int:
    shop = f"shop-{next(_shops)}"
    channel_sim.register(shop, sim)
    with db.tenant_session(tenant_id) as s:
        acc = svc.create_account(
            s,
            registry,
            settings_,
            connector="test_beta",
            shop_id=shop,
            name="Sim shop",
            secrets={"app_secret": "sim-secret"},
        )
        return acc.id


def runner(db: Any, registry: Any, settings_: Any, tenant_id: int, account_id: int) -> Any:
    def go(**kw: Any) -> sync.SyncResult:
        kw.setdefault("now", lambda: LATER)
        kw.setdefault("sleep", lambda _s: None)
        return sync.run(db, registry, settings_, tenant_id, account_id, **kw)

    return go


def cursor_of(db: Any, tenant_id: int, account_id: int, stream: str = "orders") -> Any:
    with db.tenant_session(tenant_id) as s:
        return s.scalar(
            select(ChannelCursor).where(
                ChannelCursor.account_id == account_id, ChannelCursor.stream == stream
            )
        )


def assert_once(rec: Recorder, expected: dict[str, Any], kind: str = "order") -> None:
    ids = rec.ids(kind)
    assert sorted(ids) == sorted(set(ids)), "a version was delivered twice"
    assert set(ids) == set(expected)
    assert rec.versions(kind) == expected


# --- full sync -----------------------------------------------------------------------------------


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    seed=st.integers(0, 10_000),
    n=st.integers(0, 40),
    page_size=st.integers(1, 7),
    window_hours=st.integers(1, 12),
    span_hours=st.integers(1, 40),
    repeat=st.booleans(),
)
def test_full_sync_has_no_gap_and_no_duplicate(
    erp_db, erp_registry, erp_settings, acme, recorder, routed, seed, n, page_size,
    window_hours, span_hours, repeat,
):  # fmt: skip
    end = T0 + timedelta(hours=span_hours)
    sim = PlatformSim(
        seed=seed, start=T0, end=end, orders=n, refunds=0, page_size=page_size,
        repeat_items=repeat,
    )  # fmt: skip
    acc = add_shop(erp_db, erp_registry, erp_settings, acme.id, sim)
    recorder.committed.clear()
    r = runner(erp_db, erp_registry, erp_settings, acme.id, acc)(
        since=T0, until=end, window=timedelta(hours=window_hours)
    )
    expected = sim.expected("orders", T0, end)
    assert_once(recorder, expected)
    assert r.new == len(expected) and r.changed == 0
    assert r.windows == -(-span_hours // window_hours)
    # windows asked: contiguous, within the connector's limit, covering [since, until)
    starts = sorted({(c[1], c[2]) for c in sim.calls})
    assert starts[0][0] == T0 and starts[-1][1] == end
    assert all(b[0] == a[1] for a, b in itertools.pairwise(starts))
    assert all(
        e - s <= min(BetaChannel.max_window, timedelta(hours=window_hours)) for s, e in starts
    )
    cur = cursor_of(erp_db, acme.id, acc)
    assert cur.synced_until == end and cur.window_start is None and cur.page_token is None
    # a second run over the same span delivers nothing
    again = runner(erp_db, erp_registry, erp_settings, acme.id, acc)(since=T0, until=end)
    assert again.new == again.changed == 0 and len(recorder.ids()) == len(expected)


def test_sim_pages_newest_first_from_the_last_page(routed):
    sim = PlatformSim(seed=3, start=T0, end=T0 + timedelta(hours=6), orders=30, page_size=4)
    channel_sim.register("s", sim)
    from erp_core.channels import ChannelContext, Cursor, Window

    chan = BetaChannel(ChannelContext(account_id=1, tenant_id=1, shop_id="s"))
    page = chan.fetch_orders(Cursor(window=Window(start=T0, end=T0 + timedelta(hours=6))))
    stamps = [o.modified_at for o in page.items]
    assert stamps == sorted(stamps, reverse=True)
    assert len(page.items) == 2 and sim.calls[0][3] == ""  # the last page: 30 - 7 * 4 oldest
    assert page.next is not None and page.next.token == "7"  # 30 orders: pages 8, 7, ... 1


# --- restart ---------------------------------------------------------------------------------


@pytest.mark.parametrize("crash_at", [1, 2, 3, 5, 8, 11])
def test_restart_after_a_crash_loses_nothing_and_duplicates_nothing(
    erp_db, erp_registry, erp_settings, acme, recorder, routed, crash_at
):
    end = T0 + timedelta(hours=30)
    sim = PlatformSim(seed=crash_at, start=T0, end=end, orders=70, page_size=3)
    acc = add_shop(erp_db, erp_registry, erp_settings, acme.id, sim)
    go = runner(erp_db, erp_registry, erp_settings, acme.id, acc)
    half = T0 + timedelta(hours=12)
    go(since=T0, until=half)  # the account has been synced up to `half`
    sim.crash_on_call(crash_at)
    calls_before = len(sim.calls)
    with pytest.raises(SimCrash):
        go(until=end, window=timedelta(hours=6))
    crashed_calls = sim.calls[calls_before:]
    cur = cursor_of(erp_db, acme.id, acc)
    assert cur.synced_until is not None and cur.synced_until <= end
    # the cursor names the page that failed, never one after it
    failed = crashed_calls[-1]
    if cur.page_token is not None:
        assert (cur.window_start, cur.window_end, cur.page_token) == failed[1:]
    resumed_from = len(sim.calls)
    go(until=end, window=timedelta(hours=6))
    if cur.page_token is not None:  # the resumed run starts with the page that failed
        assert sim.calls[resumed_from][1:] == failed[1:]
    assert_once(recorder, sim.expected("orders", T0, end))


def test_backfill_run_again_with_the_same_since_resumes_the_window(
    erp_db, erp_registry, erp_settings, acme, recorder, routed
):
    end = T0 + timedelta(hours=10)
    sim = PlatformSim(seed=9, start=T0, end=end, orders=40, page_size=3)
    acc = add_shop(erp_db, erp_registry, erp_settings, acme.id, sim)
    go = runner(erp_db, erp_registry, erp_settings, acme.id, acc)
    sim.crash_on_call(4)
    with pytest.raises(SimCrash):
        go(since=T0, until=end)
    cur = cursor_of(erp_db, acme.id, acc)
    assert cur.window_start == T0 and cur.page_token  # three pages committed
    n = len(sim.calls)
    r = go(since=T0, until=end)
    assert sim.calls[n][3] == cur.page_token  # no committed page fetched again
    assert_once(recorder, sim.expected("orders", T0, end))
    assert r.windows == 1


def test_cursor_never_advances_past_a_failed_batch(
    erp_db, erp_registry, erp_settings, acme, recorder, routed
):
    end = T0 + timedelta(hours=10)
    sim = PlatformSim(seed=5, start=T0, end=end, orders=30, page_size=5)
    acc = add_shop(erp_db, erp_registry, erp_settings, acme.id, sim)
    go = runner(erp_db, erp_registry, erp_settings, acme.id, acc)
    ordered = sorted(sim.data["orders"].values(), key=lambda o: (o.modified_at, o.order_id))
    victim = ordered[len(ordered) // 2].order_id
    recorder.fail_on = victim
    with pytest.raises(RuntimeError, match="hook failed"):
        go(since=T0, until=end)
    delivered = set(recorder.ids())
    assert victim not in delivered
    with erp_db.tenant_session(acme.id) as s:
        stored = set(s.scalars(select(ChannelObject.platform_id)))
    assert stored == delivered  # versions recorded exactly for the committed pages
    cur = cursor_of(erp_db, acme.id, acc)
    assert cur.synced_until is None and cur.window_start == T0
    recorder.fail_on = None
    go(since=T0, until=end)
    assert_once(recorder, sim.expected("orders", T0, end))


# --- versions ------------------------------------------------------------------------------------


def test_changed_orders_are_delivered_once_per_version(
    erp_db, erp_registry, erp_settings, acme, recorder, routed
):
    end = T0 + timedelta(hours=6)
    sim = PlatformSim(seed=11, start=T0, end=end, orders=12, refunds=4, page_size=5)
    acc = add_shop(erp_db, erp_registry, erp_settings, acme.id, sim)
    go = runner(erp_db, erp_registry, erp_settings, acme.id, acc)
    first = go(since=T0, until=end)
    assert first.new == 12
    ids = sorted(sim.data["orders"])
    later = end + timedelta(minutes=30)
    v2 = sim.touch("orders", ids[0], later, "v2")
    sim.touch("orders", ids[1], later + timedelta(minutes=1), "v2")
    r = go(until=end + timedelta(hours=2))  # incremental: from synced_until minus the overlap
    assert (r.new, r.changed) == (0, 2)
    assert recorder.ids().count(ids[0]) == 2 and recorder.versions()[ids[0]] == v2
    # an older version showing up again (a lagging replica) never overwrites the newer one
    old = sim.touch("orders", ids[0], later - timedelta(minutes=10), "stale")
    r = go(since=T0, until=end + timedelta(hours=2))
    assert r.changed == 0 and r.stale == 1 and recorder.ids().count(ids[0]) == 2
    with erp_db.tenant_session(acme.id) as s:
        row = s.scalar(select(ChannelObject).where(ChannelObject.platform_id == ids[0]))
        assert row.modified_at == v2.modified_at and row.digest == sync.digest(v2)
    assert old.modified_at < v2.modified_at
    # refunds are their own stream and cursor
    rf = go(since=T0, until=end, stream="refunds")
    assert rf.new == 4 and len(recorder.ids("refund")) == 4
    assert cursor_of(erp_db, acme.id, acc, "refunds").synced_until == end
    with erp_db.tenant_session(acme.id) as s:
        assert s.scalar(select(func.count()).select_from(ChannelCursor)) == 2


def test_incremental_runs_overlap_and_stop_before_now(
    erp_db, erp_registry, erp_settings, acme, recorder, routed
):
    end = T0 + timedelta(hours=3)
    sim = PlatformSim(seed=2, start=T0, end=end, orders=5)
    acc = add_shop(erp_db, erp_registry, erp_settings, acme.id, sim)
    go = runner(erp_db, erp_registry, erp_settings, acme.id, acc)
    now = T0 + timedelta(hours=2)
    go(since=T0, now=lambda: now)
    assert cursor_of(erp_db, acme.id, acc).synced_until == now - sync.DEFAULT_SAFETY_LAG
    n = len(sim.calls)
    go(now=lambda: now + timedelta(hours=1))
    first = sim.calls[n]
    assert first[1] == now - sync.DEFAULT_SAFETY_LAG - sync.DEFAULT_OVERLAP
    assert sim.calls[-1][2] == now + timedelta(hours=1) - sync.DEFAULT_SAFETY_LAG
    assert_once(
        recorder, sim.expected("orders", T0, now + timedelta(hours=1) - sync.DEFAULT_SAFETY_LAG)
    )


# --- platform errors -----------------------------------------------------------------------------


def test_throttling_is_answered_with_back_off_then_success(
    erp_db, erp_registry, erp_settings, acme, recorder, routed
):
    end = T0 + timedelta(hours=4)
    sim = PlatformSim(seed=4, start=T0, end=end, orders=10, page_size=4)
    acc = add_shop(erp_db, erp_registry, erp_settings, acme.id, sim)
    slept: list[float] = []
    go = runner(erp_db, erp_registry, erp_settings, acme.id, acc)
    sim.throttle(2, retry_after=None)
    go(since=T0, until=end, sleep=slept.append)
    assert slept == [1.0, 2.0]  # exponential back-off when the platform says nothing
    assert_once(recorder, sim.expected("orders", T0, end))

    sim.throttle(2, retry_after=7.5)
    slept.clear()
    go(since=T0, until=end, sleep=slept.append)
    assert slept == [7.5, 7.5]  # the platform's Retry-After wins

    before = cursor_of(erp_db, acme.id, acc)
    sim.throttle(10, retry_after=0.0)
    with pytest.raises(sync.SyncError, match="still throttled after 3 attempt"):
        go(until=end + timedelta(hours=1), throttle_retries=2)
    after = cursor_of(erp_db, acme.id, acc)
    assert after.synced_until == before.synced_until and after.page_token is None


def test_auth_error_stops_with_a_clear_error(
    erp_db, erp_registry, erp_settings, acme, recorder, routed
):
    sim = PlatformSim(seed=1, start=T0, end=T0 + timedelta(hours=2), orders=3)
    acc = add_shop(erp_db, erp_registry, erp_settings, acme.id, sim)
    sim.refuse_auth()
    with pytest.raises(sync.SyncAuthError, match=f"channel account {acc}: the platform refused"):
        runner(erp_db, erp_registry, erp_settings, acme.id, acc)(since=T0)
    assert recorder.committed == []
    assert cursor_of(erp_db, acme.id, acc).synced_until is None


def test_another_tenants_account_is_refused_and_nothing_syncs(
    erp_db, erp_registry, erp_settings, acme, make_tenant, recorder, routed
):
    bolt = make_tenant("bolt", plugins=("test_beta",))
    sim = PlatformSim(seed=1, start=T0, end=T0 + timedelta(hours=2), orders=3)
    acc = add_shop(erp_db, erp_registry, erp_settings, acme.id, sim)
    with pytest.raises(sync.SyncError, match=f"no channel account {acc} in this tenant"):
        runner(erp_db, erp_registry, erp_settings, bolt.id, acc)(since=T0)
    assert sim.calls == [] and recorder.committed == []
    with erp_db.system_session() as s:
        assert s.scalar(select(func.count()).select_from(ChannelCursor)) == 0
    with pytest.raises(sync.SyncError, match="unknown stream"):
        runner(erp_db, erp_registry, erp_settings, acme.id, acc)(stream="payments")


def test_windows_split_the_span():
    ws = list(sync.windows(T0, T0 + timedelta(hours=25), timedelta(hours=12)))
    assert [(w.start, w.end) for w in ws] == [
        (T0, T0 + timedelta(hours=12)),
        (T0 + timedelta(hours=12), T0 + timedelta(hours=24)),
        (T0 + timedelta(hours=24), T0 + timedelta(hours=25)),
    ]
    assert list(sync.windows(T0, T0, timedelta(hours=1))) == []


# --- versions recorded a page at once ------------------------------------------------------------


def _version(n: int, minute: int, memo: str) -> Any:
    from dataclasses import replace

    base = PlatformSim(seed=n, start=T0, end=T0 + timedelta(hours=1), orders=1)._order(
        n, T0 + timedelta(minutes=minute)
    )
    return replace(base, order_id=f"V{n}", seller_memo=memo)


_versions = st.lists(
    st.builds(
        _version,
        n=st.integers(0, 5),
        minute=st.integers(0, 4),
        memo=st.sampled_from(("", "a", "b")),
    ),
    max_size=12,
)


def test_versions_recorded_meanwhile_are_skipped_and_not_reported_as_inserted(
    erp_db, erp_registry, erp_settings, acme
):
    """The bulk insert of versions leaves rows already recorded as they are (a concurrent
    run recorded them between the read and the insert) and reports only the rows it added."""
    sim = PlatformSim(seed=1, start=T0, end=T0 + timedelta(hours=1), orders=0)
    acc = add_shop(erp_db, erp_registry, erp_settings, acme.id, sim)

    def row(pid: str, dg: str) -> dict[str, Any]:
        return {
            "account_id": acc,
            "kind": "order",
            "platform_id": pid,
            "modified_at": T0,
            "digest": dg,
            "updated_at": T0,
        }

    with erp_db.tenant_session(acme.id) as s:
        assert sync._insert_ignore_many(s, [row("A", "1"), row("B", "1")]) == {
            ("order", "A"),
            ("order", "B"),
        }
    with erp_db.tenant_session(acme.id) as s:
        got = sync._insert_ignore_many(s, [row(p, "2") for p in ("B", "C", "A", "D")])
        assert got == {("order", "C"), ("order", "D")}
    with erp_db.tenant_session(acme.id) as s:
        stored = s.execute(
            select(ChannelObject.platform_id, ChannelObject.digest)
            .where(ChannelObject.account_id == acc)
            .order_by(ChannelObject.platform_id)
        ).all()
    assert [tuple(r) for r in stored] == [("A", "1"), ("B", "1"), ("C", "2"), ("D", "2")]


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(before=_versions, page=_versions)
def test_record_versions_decides_as_one_at_a_time(
    erp_db, erp_registry, erp_settings, acme, routed, before, page
):
    """Repeats, changes, stale and unchanged versions, on top of versions recorded before:
    the page's verdicts and the versions left recorded are those of one call per object."""
    sim = PlatformSim(seed=1, start=T0, end=T0 + timedelta(hours=1), orders=0)
    one = add_shop(erp_db, erp_registry, erp_settings, acme.id, sim)
    many = add_shop(erp_db, erp_registry, erp_settings, acme.id, sim)
    with erp_db.tenant_session(acme.id) as s:
        for item in before:
            sync.record_version(s, one, item)
            sync.record_version(s, many, item)
    with erp_db.tenant_session(acme.id) as s:
        expected = [sync.record_version(s, one, item) for item in page]
        assert sync.record_versions(s, many, page) == expected
    with erp_db.tenant_session(acme.id) as s:
        stored = {
            acc: sorted(
                s.execute(
                    select(
                        ChannelObject.kind,
                        ChannelObject.platform_id,
                        ChannelObject.modified_at,
                        ChannelObject.digest,
                    ).where(ChannelObject.account_id == acc)
                ).all()
            )
            for acc in (one, many)
        }
    assert stored[one] == stored[many]


def test_digest_is_the_json_of_the_dataclass_tree():
    """The digest is kept across releases: a stored version must compare equal to the same
    object fetched again, or every order would be delivered once more after an upgrade."""
    import hashlib
    import json
    from dataclasses import asdict

    sim = PlatformSim(seed=4, start=T0, end=T0 + timedelta(hours=3), orders=20, refunds=5)
    for kind in ("orders", "refunds"):
        for item in sim.expected(kind, T0, T0 + timedelta(hours=3)).values():
            raw = json.dumps(asdict(item), sort_keys=True, default=sync._plain, ensure_ascii=False)
            assert sync.digest(item) == hashlib.sha256(raw.encode()).hexdigest()


class PageRecorder:
    """Implements erp_channel_orders only: receives each page's new orders in one call."""

    def __init__(self) -> None:
        self.calls: list[list[str]] = []

    @hookimpl
    def erp_channel_orders(
        self, session: Any, tenant_id: int, account_id: int, orders: Any
    ) -> None:
        self.calls.append([o.order_id for o in orders])


def test_a_page_of_orders_reaches_erp_channel_orders_in_one_call(
    erp_db, erp_registry, erp_settings, acme, recorder, routed
):
    pages = PageRecorder()
    erp_registry.pm.register(pages, name="sync-test-pages")
    try:
        end = T0 + timedelta(hours=6)
        sim = PlatformSim(seed=8, start=T0, end=end, orders=23, page_size=5)
        acc = add_shop(erp_db, erp_registry, erp_settings, acme.id, sim)
        r = runner(erp_db, erp_registry, erp_settings, acme.id, acc)(
            since=T0, until=end, window=timedelta(hours=6)
        )
    finally:
        erp_registry.pm.unregister(pages)
    assert r.new == 23 and r.pages == 5
    assert sorted(len(c) for c in pages.calls) == [3, 5, 5, 5, 5]
    # the one-at-a-time hook got the same orders in the same order
    assert [i for c in pages.calls for i in c] == recorder.ids()
