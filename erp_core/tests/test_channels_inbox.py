"""The inbox: ``POST /hooks/{connector}/{account_id}`` verifies, stores, then processes;
``erp inbox replay`` re-processes stored messages deterministically and idempotently."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from itertools import count
from typing import Any, ClassVar
from urllib.parse import parse_qsl, quote

import pytest
from click.testing import CliRunner
from erp_test_beta.channel import SIGNATURE_HEADER, BetaChannel, make_order, sign
from sqlalchemy import func, select, text

from erp_core.channels import (
    BillRow,
    Field,
    InboundMessage,
    InvalidMessage,
    Order,
    Payment,
    PaymentChannel,
    PaymentStatus,
    Refund,
)
from erp_core.channels import inbox as inbox_svc
from erp_core.channels import service as svc
from erp_core.channels.inbox_models import InboxMessage
from erp_core.channels.sync_models import ChannelObject
from erp_core.cli import main
from erp_core.plugins.hookspecs import hookimpl
from erp_core.plugins.registry import PluginRegistry
from erp_core.testing.fixtures import login

SECRET = "inb0x-s3cr3t-5a7c"
OTHER_SECRET = "0ther-s3cr3t-88b1"
OK_REPLY = '{"ok":true}'
FAIL_REPLY = '{"ok":false}'

_names = count()


class ChannelRecorder:
    """Records the erp_channel_* hooks it receives; ``fail`` makes the order hook raise."""

    def __init__(self) -> None:
        self.orders: list[tuple[int, int, Order]] = []
        self.refunds: list[tuple[int, int, Refund]] = []
        self.payments: list[tuple[int, int, Payment]] = []
        self.fail: Exception | None = None
        self.during: Any = None  # called in the order hook

    @hookimpl
    def erp_channel_order(
        self, session: Any, tenant_id: int, account_id: int, order: Order
    ) -> None:
        if self.fail is not None:
            raise self.fail
        if self.during is not None:
            self.during()
        self.orders.append((tenant_id, account_id, order))

    @hookimpl
    def erp_channel_refund(
        self, session: Any, tenant_id: int, account_id: int, refund: Refund
    ) -> None:
        self.refunds.append((tenant_id, account_id, refund))

    @hookimpl
    def erp_channel_payment(
        self, session: Any, tenant_id: int, account_id: int, payment: Payment
    ) -> None:
        self.payments.append((tenant_id, account_id, payment))


@contextmanager
def recording(registry: PluginRegistry) -> Iterator[ChannelRecorder]:
    rec = ChannelRecorder()
    registry.pm.register(rec, name=f"test:channel-recorder-{next(_names)}")
    try:
        yield rec
    finally:
        registry.pm.unregister(rec)


@pytest.fixture
def rec(erp_registry: PluginRegistry) -> Iterator[ChannelRecorder]:
    with recording(erp_registry) as r:
        yield r


@pytest.fixture(autouse=True)
def _no_platform_orders() -> Iterator[None]:
    yield
    BetaChannel.orders.clear()


@pytest.fixture
def acme(make_tenant: Any) -> Any:
    return make_tenant("acme", plugins=("test_beta",))


def add_account(db: Any, registry: Any, settings: Any, tenant_id: int, **kw: Any) -> int:
    base: dict[str, Any] = dict(
        connector="test_beta", shop_id="shop-1", name="Flagship", secrets={"app_secret": SECRET}
    )
    base.update(kw)
    with db.tenant_session(tenant_id) as s:
        return svc.create_account(s, registry, settings, **base).id


@pytest.fixture
def account(erp_db: Any, erp_registry: Any, erp_settings: Any, acme: Any) -> int:
    return add_account(erp_db, erp_registry, erp_settings, acme.id)


def order_msg(mid: str, order_id: str, status: str, modified: str, **extra: Any) -> bytes:
    order = {"order_id": order_id, "status": status, "modified_at": modified, **extra}
    return json.dumps({"id": mid, "topic": f"trade.{status}", "order": order}).encode()


def push(
    client: Any,
    account_id: Any,
    body: bytes,
    *,
    secret: str = SECRET,
    connector: str = "test_beta",
    signature: str | None = None,
) -> Any:
    return client.post(
        f"/hooks/{connector}/{account_id}",
        content=body,
        headers={
            SIGNATURE_HEADER: signature if signature is not None else sign(secret, body),
            "content-type": "application/json",
        },
    )


def rows(db: Any, tenant_id: int) -> list[InboxMessage]:
    with db.tenant_session(tenant_id) as s:
        out = list(s.scalars(select(InboxMessage).order_by(InboxMessage.id)))
        s.expunge_all()
        return out


def count_all(db: Any, table: str) -> int:
    with db.engine.begin() as conn:
        if db.is_postgres:
            conn.execute(text("SELECT set_config('erp.all_tenants', 'on', true)"))
        return int(conn.execute(text(f"SELECT count(*) FROM {table}")).scalar_one())


T1 = "2026-11-30T10:00:00+08:00"
T2 = "2026-11-30T10:05:00+08:00"


# --- receiving -------------------------------------------------------------------------------


def test_valid_message_is_stored_then_processed_and_answered_exactly(
    client, erp_db, acme, account, rec
):
    seen_committed: list[int] = []
    # while the hook runs, another connection already sees the stored message
    rec.during = lambda: seen_committed.append(count_all(erp_db, "core_inbox_message"))
    body = order_msg("m-1", "o-1", "paid", T1)
    r = push(client, account, body)
    assert r.status_code == 200 and r.text == OK_REPLY
    assert r.headers["content-type"].startswith("application/json")
    assert seen_committed == [1]
    (row,) = rows(erp_db, acme.id)
    assert (row.message_id, row.topic, row.kind, row.subject_id) == (
        "m-1",
        "trade.paid",
        "order",
        "o-1",
    )
    assert row.state == "processed" and row.attempts == 1 and row.last_error is None
    assert row.body == body and row.headers[SIGNATURE_HEADER] == sign(SECRET, body)
    assert row.account_id == account and row.processed_at is not None
    assert row.result == "delivered order o-1"
    ((tid, aid, order),) = rec.orders
    assert (tid, aid, order.order_id, order.status) == (acme.id, account, "o-1", "paid")


def test_a_redelivered_message_is_stored_once_and_delivered_once(
    client, erp_db, acme, account, rec
):
    body = order_msg("m-1", "o-1", "paid", T1)
    for _ in range(3):
        r = push(client, account, body)
        assert r.status_code == 200 and r.text == OK_REPLY
    assert len(rows(erp_db, acme.id)) == 1
    assert len(rec.orders) == 1


@pytest.mark.parametrize(
    "case",
    [
        "tampered",
        "bad_signature",
        "no_signature",
        "unknown_account",
        "wrong_connector",
        "not_a_number",
        "unparseable",
        "other_tenants_account",
        "inactive",
        "not_enabled",
        "unicode_digits",
        "unknown_connector",
    ],
)
def test_rejected_messages_get_the_failure_reply_and_change_nothing(
    case, client, erp_db, erp_registry, erp_settings, acme, account, make_tenant, rec, caplog
):
    caplog.set_level(logging.DEBUG)
    bolt = make_tenant("bolt", plugins=("test_beta",))
    bolt_account = add_account(
        erp_db, erp_registry, erp_settings, bolt.id, secrets={"app_secret": OTHER_SECRET}
    )
    body = order_msg("m-1", "o-1", "paid", T1)
    connector = "test_beta"
    kw: dict[str, Any] = {}
    target: Any = account
    if case == "tampered":
        kw["signature"] = sign(SECRET, body)
        body = body.replace(b"o-1", b"o-2")
    elif case == "bad_signature":
        kw["secret"] = "not-the-secret"
    elif case == "no_signature":
        kw["signature"] = ""
    elif case == "unknown_account":
        target = 999_999
    elif case == "wrong_connector":  # the account is another connector's
        with erp_db.tenant_session(acme.id) as s:
            svc.get_account(s, account).connector = "test_other"
    elif case == "unknown_connector":
        connector = "nope"
    elif case == "not_a_number":
        target = "1%20OR%201=1"
    elif case == "unparseable":
        body = b"{not json"
    elif case == "other_tenants_account":
        target = bolt_account  # signed with acme's secret: bolt's account does not verify it
    elif case == "not_enabled":
        from erp_core.tenancy.models import Tenant
        from erp_core.tenancy.service import disable_plugin

        with erp_db.session() as s, s.begin():
            disable_plugin(s, erp_registry, s.get(Tenant, acme.id), "test_beta")
    elif case == "unicode_digits":
        target = "\u0661"  # ARABIC-INDIC DIGIT ONE: int() would take it
    elif case == "inactive":
        with erp_db.tenant_session(acme.id) as s:
            svc.deactivate_account(s, svc.get_account(s, account))
    r = push(client, target, body, connector=connector, **kw)
    if case == "unknown_connector":
        assert r.status_code == 400 and r.text == "fail"
    else:
        assert r.status_code == 403 and r.text == FAIL_REPLY, r.text
    assert count_all(erp_db, "core_inbox_message") == 0
    assert count_all(erp_db, "core_inbox_subject") == 0
    assert rec.orders == []
    assert "inbox: rejected a message" in caplog.text
    for secret in (SECRET, OTHER_SECRET, sign(SECRET, body)):
        assert secret not in caplog.text


def test_a_body_over_the_limit_is_refused(client, erp_db, account, monkeypatch):
    monkeypatch.setattr(inbox_svc, "MAX_BODY", 100)
    body = order_msg("m-1", "o-1", "paid", T1, sku="X" * 200)
    r = push(client, account, body)
    assert r.status_code == 413
    assert count_all(erp_db, "core_inbox_message") == 0


def test_the_hook_route_needs_no_session_and_no_csrf(client, erp_db, acme, account, rec):
    r = push(client, account, order_msg("m-1", "o-1", "paid", T1))
    assert r.status_code == 200 and r.text == OK_REPLY
    # a signed-in browser's session (no CSRF token sent) and a bad bearer token change
    # nothing: the route resolves no principal, only the signature counts
    assert login(client, acme.email, acme.password).status_code in (302, 303)
    r = push(client, account, order_msg("m-2", "o-1", "shipped", T2))
    assert r.status_code == 200 and r.text == OK_REPLY
    body = order_msg("m-3", "o-1", "completed", "2026-11-30T11:00:00+08:00")
    r = client.post(
        f"/hooks/test_beta/{account}",
        content=body,
        headers={SIGNATURE_HEADER: sign(SECRET, body), "authorization": "Bearer nope"},
    )
    assert r.status_code == 200 and r.text == OK_REPLY
    assert [o.status for _, _, o in rec.orders] == ["paid", "shipped", "completed"]
    for row in rows(erp_db, acme.id):  # credentials a proxy passed on are not kept
        assert "authorization" not in row.headers and "cookie" not in row.headers
    assert client.get(f"/hooks/test_beta/{account}").status_code == 405


def test_secrets_never_reach_the_logs(client, erp_db, acme, account, rec, caplog):
    caplog.set_level(logging.DEBUG)
    push(client, account, order_msg("m-1", "o-1", "paid", T1))
    push(client, account, order_msg("m-2", "o-1", "paid", T2), secret="wrong")
    rec.fail = RuntimeError("boom")
    push(client, account, order_msg("m-3", "o-1", "shipped", T2))
    assert "inbox: stored message" in caplog.text and "failed: RuntimeError: boom" in caplog.text
    assert SECRET not in caplog.text
    assert [r.state for r in rows(erp_db, acme.id)] == ["processed", "failed"]


# --- processing --------------------------------------------------------------------------------


def test_a_processing_failure_is_stored_as_failed_and_answered_with_success(
    client, erp_db, erp_registry, erp_settings, acme, account, rec
):
    body = json.dumps({"id": "m-1", "topic": "trade.changed", "order_id": "o-9"}).encode()
    r = push(client, account, body)
    assert r.status_code == 200 and r.text == OK_REPLY  # safely stored: no redelivery needed
    (row,) = rows(erp_db, acme.id)
    assert row.state == "failed" and row.attempts == 1
    assert "the platform knows no order o-9" in (row.last_error or "")
    assert rec.orders == []
    # the cause is fixed: the platform now answers for the order
    BetaChannel.orders["o-9"] = make_order({"order_id": "o-9", "modified_at": T1})
    with erp_db.tenant_session(acme.id) as s:
        msg = s.get(InboxMessage, row.id)
        assert (
            inbox_svc.process(s, msg, registry=erp_registry, settings=erp_settings) == "processed"
        )
    (row,) = rows(erp_db, acme.id)
    assert row.state == "processed" and row.attempts == 2 and row.last_error is None
    assert [o.order_id for _, _, o in rec.orders] == ["o-9"]


def test_a_failing_hook_rolls_back_what_processing_wrote(
    client, erp_db, erp_registry, erp_settings, acme, account, rec
):
    rec.fail = RuntimeError("business plugin broke")
    push(client, account, order_msg("m-1", "o-1", "paid", T1))
    (row,) = rows(erp_db, acme.id)
    assert row.state == "failed" and "business plugin broke" in (row.last_error or "")
    assert count_all(erp_db, "core_channel_object") == 0  # not marked delivered
    rec.fail = None
    with erp_db.tenant_session(acme.id) as s:
        inbox_svc.process(
            s, s.get(InboxMessage, row.id), registry=erp_registry, settings=erp_settings
        )
    assert len(rec.orders) == 1 and count_all(erp_db, "core_channel_object") == 1


def test_out_of_order_an_older_version_is_not_delivered_after_a_newer(
    client, erp_db, acme, account, rec
):
    # "paid" (newer) arrives before "created" (older): the hook sees paid only
    push(client, account, order_msg("m-paid", "o-1", "paid", T2))
    push(client, account, order_msg("m-created", "o-1", "pending_payment", T1))
    assert [(o.order_id, o.status) for _, _, o in rec.orders] == [("o-1", "paid")]
    created = next(r for r in rows(erp_db, acme.id) if r.message_id == "m-created")
    assert created.state == "processed" and "older than delivered" in created.result
    with erp_db.tenant_session(acme.id) as s:
        (version,) = s.scalars(select(ChannelObject)).all()
        assert (version.kind, version.platform_id) == ("order", "o-1")
    # a newer version after that is delivered
    push(client, account, order_msg("m-shipped", "o-1", "shipped", "2026-11-30T10:09:00+08:00"))
    assert [o.status for _, _, o in rec.orders] == ["paid", "shipped"]


def test_a_version_is_delivered_once_whether_pushed_or_synced(client, erp_db, acme, account, rec):
    """Push and sync share the record of delivered versions: the hooks see each version once."""
    from erp_core.channels.sync import record_version

    push(client, account, order_msg("m-1", "o-1", "paid", T1))
    (_, _, pushed) = rec.orders[0]
    with erp_db.tenant_session(acme.id) as s:  # the sync then fetches the same version
        assert record_version(s, account, pushed) == "unchanged"
    # a version the sync delivered first is not delivered again by its push
    shipped = {"order_id": "o-1", "status": "shipped", "modified_at": "2026-11-30T10:09:00+08:00"}
    with erp_db.tenant_session(acme.id) as s:
        assert record_version(s, account, make_order(shipped, pushed.account)) == "changed"
    push(client, account, json.dumps({"id": "m-2", "topic": "t", "order": shipped}).encode())
    assert [o.status for _, _, o in rec.orders] == ["paid"]


def test_refunds_and_bare_messages(client, erp_db, acme, account, rec):
    refund = {"refund_id": "r-1", "order_id": "o-1", "modified_at": T1, "amount": "5.00"}
    body = json.dumps({"id": "m-r", "topic": "refund.created", "refund": refund}).encode()
    assert push(client, account, body).status_code == 200
    bare = json.dumps({"id": "m-x", "topic": "item.changed"}).encode()
    assert push(client, account, bare).status_code == 200
    assert [r.refund_id for _, _, r in rec.refunds] == ["r-1"]
    states = {r.message_id: (r.state, r.result) for r in rows(erp_db, acme.id)}
    assert states["m-r"] == ("processed", "delivered refund r-1")
    assert states["m-x"][0] == "processed" and "nothing to deliver" in states["m-x"][1]


def test_processing_parses_the_stored_request_again(
    client, erp_db, erp_registry, erp_settings, acme, account, rec
):
    push(client, account, order_msg("m-1", "o-1", "paid", T1))
    with erp_db.tenant_session(acme.id) as s:  # someone changed the stored body
        row = s.scalars(select(InboxMessage)).one()
        row.body = row.body.replace(b"o-1", b"o-2")
        row.state = "received"
    with erp_db.tenant_session(acme.id) as s:
        row = s.scalars(select(InboxMessage)).one()
        assert inbox_svc.process(s, row, registry=erp_registry, settings=erp_settings) == "failed"
        assert "bad signature" in (row.last_error or "")
    assert len(rec.orders) == 1


# --- tenancy -----------------------------------------------------------------------------------


def test_another_tenant_cannot_see_inbox_rows(
    client, erp_db, erp_registry, erp_settings, acme, account, make_tenant, rec
):
    bolt = make_tenant("bolt", plugins=("test_beta",))
    bolt_account = add_account(
        erp_db, erp_registry, erp_settings, bolt.id, secrets={"app_secret": OTHER_SECRET}
    )
    push(client, account, order_msg("m-1", "o-1", "paid", T1))
    push(client, bolt_account, order_msg("m-1", "o-1", "paid", T1), secret=OTHER_SECRET)
    assert count_all(erp_db, "core_inbox_message") == 2  # same message id, two tenants
    for t, acc in ((acme, account), (bolt, bolt_account)):
        with erp_db.tenant_session(t.id) as s:
            assert [r.account_id for r in s.scalars(select(InboxMessage))] == [acc]
            assert s.scalar(select(func.count()).select_from(ChannelObject)) == 1
    assert sorted((tid, aid) for tid, aid, _ in rec.orders) == sorted(
        [(acme.id, account), (bolt.id, bolt_account)]
    )
    if erp_db.is_postgres:  # row-level security too, below the ORM
        with erp_db.engine.begin() as conn:
            conn.execute(text("SELECT set_config('erp.tenant_id', :t, true)"), {"t": str(bolt.id)})
            n = conn.execute(text("SELECT count(*) FROM core_inbox_message")).scalar_one()
            assert n == 1


# --- erp inbox replay ----------------------------------------------------------------------------


@pytest.fixture
def cli(erp_settings: Any, erp_db: Any, erp_registry: Any, monkeypatch: Any) -> Any:
    monkeypatch.setenv("ERP_DATABASE_URL", erp_settings.resolved_database_url())
    monkeypatch.setenv("ERP_BROKER_URL", erp_settings.resolved_broker_url())
    monkeypatch.setenv("ERP_VAR_DIR", str(erp_settings.var_path))
    monkeypatch.setenv("ERP_SECRET_KEY", erp_settings.secret_key)
    # the command sees the test's registry (and so the hook recorder registered on it)
    monkeypatch.setattr(PluginRegistry, "discover", classmethod(lambda cls, *a: erp_registry))
    runner = CliRunner()

    def run(*args: str) -> Any:
        return runner.invoke(main, ["inbox", "replay", *args], catch_exceptions=False)

    return run


def named(mid: str, order_id: str) -> bytes:
    return json.dumps({"id": mid, "topic": "trade.changed", "order_id": order_id}).encode()


def test_replay_after_the_cause_is_fixed_then_idempotent(cli, client, erp_db, acme, account, rec):
    push(client, account, named("m-1", "o-1"))  # the platform does not know o-1 yet: fails
    push(client, account, order_msg("m-2", "o-2", "paid", T1))  # processed
    assert [r.state for r in rows(erp_db, acme.id)] == ["failed", "processed"]
    r = cli("--tenant", "acme", "--failed-only")
    assert r.exit_code == 1
    assert "[1/1] account" in r.output and "message m-1: failed" in r.output
    assert "0 processed, 1 failed" in r.output
    BetaChannel.orders["o-1"] = make_order({"order_id": "o-1", "modified_at": T2})
    r = cli("--tenant", "acme")
    assert r.exit_code == 0, r.output
    assert "message m-1: processed: delivered order o-1" in r.output
    assert "replayed 1 message(s): 1 processed, 0 failed" in r.output
    assert sorted(o.order_id for _, _, o in rec.orders) == ["o-1", "o-2"]
    first = [(x.message_id, x.state, x.result) for x in rows(erp_db, acme.id)]
    # nothing pending any more; replaying everything delivers nothing again
    assert cli("--tenant", "acme").output.strip() == "no messages to replay"
    r = cli("--tenant", "acme", "--all", "--account", str(account), "--since", "2000-01-01")
    assert r.exit_code == 0 and "2 processed, 0 failed" in r.output
    assert "already delivered" in r.output
    assert len(rec.orders) == 2
    again = [(x.message_id, x.state) for x in rows(erp_db, acme.id)]
    assert again == [(m, s) for m, s, _ in first]
    r = cli("--tenant", "acme", "--message", "m-2")
    assert r.exit_code == 0 and "[1/1]" in r.output and len(rec.orders) == 2


def test_replay_is_deterministic_for_out_of_order_messages(cli, client, erp_db, acme, account, rec):
    push(client, account, order_msg("m-paid", "o-1", "paid", T2))
    push(client, account, order_msg("m-created", "o-1", "pending_payment", T1))
    before = [(x.message_id, x.state, x.result) for x in rows(erp_db, acme.id)]
    r = cli("--tenant", "acme", "--all")
    assert r.exit_code == 0
    after = [(x.message_id, x.state) for x in rows(erp_db, acme.id)]
    assert after == [(m, s) for m, s, _ in before]
    assert [o.status for _, _, o in rec.orders] == ["paid"]


def test_replay_errors_are_clear(
    cli, client, erp_db, erp_registry, erp_settings, acme, account, make_tenant, caplog
):
    caplog.set_level(logging.DEBUG)
    r = cli("--tenant", "nope")
    assert r.exit_code == 1 and "nope" in r.output
    r = cli("--tenant", "acme", "--account", "999")
    assert r.exit_code == 1 and "has no channel account 999" in r.output
    r = cli("--tenant", "acme", "--since", "yesterday")
    assert r.exit_code == 2 and "not an ISO date" in r.output
    r = cli("--tenant", "acme", "--failed-only", "--all")
    assert r.exit_code == 2 and "exclude each other" in r.output
    r = cli("--tenant", "acme", "--message", "m-404")
    assert r.exit_code == 1 and "no stored message 'm-404'" in r.output
    second = add_account(erp_db, erp_registry, erp_settings, acme.id, shop_id="shop-2")
    push(client, account, named("m-1", "o-1"))
    push(client, second, named("m-1", "o-1"))
    r = cli("--tenant", "acme", "--message", "m-1")
    assert r.exit_code == 1 and "name one with --account" in r.output
    r = cli("--tenant", "acme", "--message", "m-1", "--account", str(second))
    assert r.exit_code == 1 and "[1/1]" in r.output and "failed" in r.output
    # another tenant's replay sees none of acme's messages
    make_tenant("bolt", plugins=("test_beta",))
    assert cli("--tenant", "bolt").output.strip() == "no messages to replay"
    assert SECRET not in caplog.text
    with erp_db.tenant_session(acme.id) as s:
        assert len(s.scalars(select(InboxMessage)).all()) == 2


# --- a payment channel ----------------------------------------------------------------------------


class PayChannel(PaymentChannel):
    """Alipay-like: form body ``id=..&trade=..&time=..&sig=..``; the payment is queried."""

    secret_fields = (Field(name="app_secret", title="App secret"),)
    payments: ClassVar[dict[str, Payment]] = {}

    def parse_notification(
        self, headers: Mapping[str, str], body: bytes, query: Mapping[str, str]
    ) -> InboundMessage:
        fields = dict(parse_qsl(body.decode()))
        signed = body.decode().rsplit("&sig=", 1)[0].encode()
        if fields.get("sig") != sign(self.context.secrets["app_secret"], signed):
            raise InvalidMessage("bad signature")
        when = datetime.fromisoformat(fields["time"]) if fields.get("time") else None
        return InboundMessage(
            message_id=fields["id"],
            topic="trade_status_sync",
            kind="payment",
            subject_id=fields["trade"],
            occurred_at=when,
            reply="success",
        )

    def query_payment(self, out_trade_no: str) -> Payment:
        return self.payments[out_trade_no]

    def create_payment(self, request: Any) -> Mapping[str, str]:
        raise NotImplementedError

    def refund(self, request: Any) -> Refund:
        raise NotImplementedError

    def query_refund(self, out_trade_no: str, out_request_no: str) -> Refund:
        raise NotImplementedError

    def download_bill(self, day: datetime) -> bytes:
        raise NotImplementedError

    def parse_bill(self, data: bytes) -> Sequence[BillRow]:
        raise NotImplementedError


def notify(mid: str, trade: str, when: str = "") -> bytes:
    signed = f"id={mid}&trade={trade}&time={quote(when)}".encode()
    return signed + b"&sig=" + sign(SECRET, signed).encode()


def test_payment_notifications_are_queried_versioned_and_answered_success(
    client, erp_db, erp_registry, erp_settings, acme, rec, monkeypatch
):
    monkeypatch.setattr(svc, "connectors", lambda registry: {"test_beta": PayChannel})
    monkeypatch.setattr(PayChannel, "payments", {})
    acc = add_account(erp_db, erp_registry, erp_settings, acme.id)
    paid = Payment(
        out_trade_no="T1", amount=Decimal("9.90"), status=PaymentStatus.SUCCEEDED, raw_status="TS"
    )
    PayChannel.payments["T1"] = paid
    form = {"content-type": "application/x-www-form-urlencoded"}
    url = f"/hooks/test_beta/{acc}"
    r = client.post(url, content=notify("n-2", "T1", T2), headers=form)
    assert (r.status_code, r.text) == (200, "success")
    assert r.headers["content-type"].startswith("text/plain")
    r = client.post(url, content=notify("n-1", "T1", T1), headers=form)  # older, arrives later
    assert (r.status_code, r.text) == (200, "success")
    r = client.post(url, content=notify("n-2", "T1", T2).replace(b"T1", b"T9"), headers=form)
    assert (r.status_code, r.text) == (400, "fail")  # the default failure reply
    assert [p.out_trade_no for _, _, p in rec.payments] == ["T1"]
    # without a time a notification is delivered once per message, replay included
    client.post(url, content=notify("n-3", "T1"), headers=form)
    assert len(rec.payments) == 2
    with erp_db.tenant_session(acme.id) as s:
        row = s.scalars(select(InboxMessage).where(InboxMessage.message_id == "n-3")).one()
        inbox_svc.process(s, row, registry=erp_registry, settings=erp_settings)
        assert "already delivered by this message" in row.result
    assert len(rec.payments) == 2


# --- the sweep -----------------------------------------------------------------------------------


def test_the_sweep_processes_what_a_crash_left_and_retries_failures_a_few_times(
    erp_db, erp_registry, erp_settings, acme, account, rec
):
    # stored, then the process stopped before processing (the platform had its reply)
    got = inbox_svc.receive(
        erp_db,
        erp_registry,
        erp_settings,
        connector="test_beta",
        account_id=str(account),
        headers={SIGNATURE_HEADER: sign(SECRET, body := order_msg("m-1", "o-1", "paid", T1))},
        body=body,
        query={},
        process_now=False,
    )
    # a message whose order the platform does not know yet: it fails
    lost = json.dumps({"id": "m-2", "topic": "trade.changed", "order_id": "o-9"}).encode()
    inbox_svc.receive(
        erp_db,
        erp_registry,
        erp_settings,
        connector="test_beta",
        account_id=str(account),
        headers={SIGNATURE_HEADER: sign(SECRET, lost)},
        body=lost,
        query={},
    )
    first, second = rows(erp_db, acme.id)
    assert (first.id, first.state, second.state) == (got.message_id, "received", "failed")
    arrived = second.received_at.replace(tzinfo=UTC)  # the later of the two

    def sweep(after: timedelta) -> inbox_svc.Swept:
        return inbox_svc.sweep(erp_db, erp_registry, erp_settings, now=arrived + after)

    # a message being processed right now by its request is left alone
    assert str(sweep(timedelta(seconds=5))) == "0 processed, 0 failed" and rec.orders == []
    assert (sweep(inbox_svc.SWEEP_AFTER).processed, len(rec.orders)) == (1, 1)
    # the failed one is tried again on the schedule, then left for people
    attempts = []
    for delay in inbox_svc.RETRY_AFTER:
        assert sweep(delay).failed == 1
        attempts.append(rows(erp_db, acme.id)[1].attempts)
    assert attempts == [2, 3, 4]
    assert str(sweep(timedelta(days=1))) == "0 processed, 0 failed"
    # nothing is delivered twice, however often the sweep runs
    BetaChannel.orders["o-9"] = make_order({"order_id": "o-9", "modified_at": T1})
    assert sweep(timedelta(days=2)).processed == 0  # failed for good: `erp inbox replay`
    assert [o.order_id for _, _, o in rec.orders] == ["o-1"]
    assert [r.state for r in rows(erp_db, acme.id)] == ["processed", "failed"]


def test_the_sweep_is_scheduled(erp_registry):
    from erp_core.tasks.app import beat_schedule

    entry = beat_schedule(erp_registry)["core.channels.inbox"]
    assert entry["task"] == inbox_svc.SWEEP_TASK == inbox_svc.sweep_task.name
